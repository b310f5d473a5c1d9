package conjur_test

import (
	"os"
	"testing"

	"github.com/sowerproject/sower/internal/testutil"
)

// TestMain keeps conjur-api-go's ~/.netrc writes in a HOME of the tests' own.
func TestMain(m *testing.M) { os.Exit(testutil.RunWithOwnHome(m)) }
