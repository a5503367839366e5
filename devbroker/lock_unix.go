//go:build unix

package devbroker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockName is the advisory lock file kept in the data directory. kfake only
// reads its own files, so the extra file does not disturb it.
const lockName = "devbroker.lock"

// lockDir takes an exclusive advisory lock on dir, so two brokers never write
// the same data directory (kfake itself does not guard against that).
func lockDir(dir string) (unlock func() error, err error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("devbroker: lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("devbroker: data dir %s is in use by another broker", dir)
		}
		return nil, fmt.Errorf("devbroker: lock data dir: %w", err)
	}
	return f.Close, nil // closing the file releases the lock
}
