// Package podargs handles the command line of sower's pod programs
// (sower-seed-fetcher, sower-authn-client). Like Conjur's, they are
// configured by environment variables alone, so an argument is either a
// request for help or a mistake, and neither may start a run.
package podargs

import (
	"fmt"
	"io"
)

// Check looks at the arguments after the program name. It prints usage to
// stdout for -h, --help or help, and a one-line error to stderr for anything
// else, and then says the program should exit with code; with no arguments
// it returns exit false and the program runs.
func Check(name, usage string, args []string, stdout, stderr io.Writer) (code int, exit bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0, true
	}
	fmt.Fprintf(stderr, "%s: unexpected argument %q: it takes no arguments, only environment variables (see %s --help)\n", name, args[0], name)
	return 2, true
}
