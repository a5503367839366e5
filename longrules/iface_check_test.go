package longrules_test

import (
	"github.com/vigil-sec/vigil/longrules"
	"github.com/vigil-sec/vigil/storage"
)

var _ longrules.Querier = (*storage.Store)(nil)
