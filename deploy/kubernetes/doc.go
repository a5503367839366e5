// Package kubernetes holds no code: it is the home of the Kubernetes
// manifests in this directory and of the test that checks them (every
// object named, Deployments hardened and probed, the Vigil configuration
// in the ConfigMap well-formed, every mount and Secret reference
// resolvable) and the systemd unit in ../systemd.
//
// It must not import the daemon's packages: the manifests are checked as
// data. Whether the embedded configuration loads is for `vigil config
// check`.
package kubernetes
