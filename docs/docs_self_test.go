package docs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sowerproject/sower/internal/testutil"
)

// The checks must fail when a document breaks. These tests break one on
// purpose, in a document of their own, and expect the failure to name it.

const brokenDoc = "# A document\n\n" +
	"```sh\nsower --help >/dev/null\n```\n\n" +
	"```sh\necho hello\n```\n\n```text output\nhello\n```\n\n" +
	"```sh\nsower policy load root no-such-file.yml\n```\n\n" +
	"```sh\necho never reached\n```\n"

func TestABrokenCommandFailsNamingItsBlock(t *testing.T) {
	blocks, err := parseBlocks("broken.md", []byte(brokenDoc))
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 4 || blocks[1].output == nil {
		t.Fatalf("parsed %d blocks (output attached: %v), want 4 and the output on the second", len(blocks), blocks[1].output != nil)
	}
	sower := testutil.BuildSower(t)
	env := []string{"HOME=" + t.TempDir(), "PATH=" + filepath.Dir(sower) + ":" + os.Getenv("PATH")}
	err = runScript(t.TempDir(), env, strings.NewReplacer(), blocks)
	if err == nil || !strings.Contains(err.Error(), "broken.md:15") || !strings.Contains(err.Error(), "no-such-file.yml") {
		t.Fatalf("runScript = %v, want the failure of broken.md:15 with its output", err)
	}

	// The same document without the broken block passes, and a wrong
	// expected output fails.
	good := append(append([]block{}, blocks[:2]...), blocks[3])
	if err := runScript(t.TempDir(), env, strings.NewReplacer(), good); err != nil {
		t.Fatalf("the document without its broken block: %v", err)
	}
	good[1].output = &block{file: "broken.md", line: 10, lang: "text", text: "goodbye\n"}
	if err := runScript(t.TempDir(), env, strings.NewReplacer(), good); err == nil || !strings.Contains(err.Error(), `no line matches "goodbye"`) {
		t.Fatalf("a wrong expected output: %v", err)
	}
}

func TestABrokenPolicyFails(t *testing.T) {
	blocks, err := parseBlocks("p.md", []byte("```yaml\n- !policy\n  id: a\n  body:\n  - !permit {role: !group g, privileges: [read], resource: !webservice}\n```\n"+
		"```yaml invalid\n- !host\n  id: h\n  bogus: 1\n```\n"))
	if err != nil || len(blocks) != 2 {
		t.Fatalf("parse: %v, %d blocks", err, len(blocks))
	}
	if err := checkPolicy(blocks[0]); err == nil {
		t.Error(`"!webservice}" (no space before the brace) parsed; the check cannot catch docs/authn.md's old mistake`)
	}
	if err := checkPolicy(blocks[1]); err == nil {
		t.Error("a host with an unknown attribute loads")
	}
}

func TestMatchOutput(t *testing.T) {
	tests := map[string]struct {
		want, got string
		ok        bool
	}{
		"in order":          {"a\nc\n", "a\nb\nc\n", true},
		"out of order":      {"c\na\n", "a\nb\nc\n", false},
		"ellipsis":          {"seed … written to follower.seed", "seed 75045d written to follower.seed (sealed)", true},
		"ellipsis mismatch": {"seed … written to x", "seed 1 written to y", false},
	}
	for name, tc := range tests {
		if err := matchOutput(tc.want, tc.got); (err == nil) != tc.ok {
			t.Errorf("%s: matchOutput = %v, want ok=%v", name, err, tc.ok)
		}
	}
}
