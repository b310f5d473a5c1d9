package podargs

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := map[string]struct {
		args        []string
		code        int
		exit        bool
		out, errOut string
	}{
		"no arguments run":   {args: nil},
		"--help prints":      {args: []string{"--help"}, exit: true, out: "Usage: x"},
		"-h prints":          {args: []string{"-h"}, exit: true, out: "Usage: x"},
		"help prints":        {args: []string{"help"}, exit: true, out: "Usage: x"},
		"anything else is 2": {args: []string{"--deadline=5m"}, code: 2, exit: true, errOut: `x: unexpected argument "--deadline=5m"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var out, errOut strings.Builder
			code, exit := Check("x", "Usage: x\n", tc.args, &out, &errOut)
			if code != tc.code || exit != tc.exit {
				t.Fatalf("Check(%q) = %d, %v; want %d, %v", tc.args, code, exit, tc.code, tc.exit)
			}
			if !strings.Contains(out.String(), tc.out) || tc.out == "" && out.Len() > 0 {
				t.Errorf("stdout %q, want %q", out.String(), tc.out)
			}
			if !strings.Contains(errOut.String(), tc.errOut) || tc.errOut == "" && errOut.Len() > 0 {
				t.Errorf("stderr %q, want %q", errOut.String(), tc.errOut)
			}
		})
	}
}
