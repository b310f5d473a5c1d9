// Package docs holds sower's documentation. Its test keeps the documents
// honest: every shell and policy block in README.md and docs/*.md either is
// marked as an illustration or is checked, so a documented command or policy
// that stops working fails `make test`.
//
// The marks are words after the fence's language, which renderers ignore:
//
//	```sh                 run by the test, in order, with the file's other runnable blocks
//	```sh illustration    shown only (placeholders, destructive or slow steps)
//	```text output        lines the shell block before it must print, in order ("…" matches anything);
//	                      after a `yaml invalid` block, the error it must be refused with
//	```yaml               a Conjur policy (a list of !tags): must parse and resolve
//	```yaml invalid       a policy that must be refused
//	```yaml illustration  YAML that is not a policy, or only a fragment of one
//
// Runnable shell blocks run in one bash (set -euo pipefail) against a real
// single-node Leader started from the built binary with `sower server
// --data-dir ./.sower` in a fresh directory, the way `make run` starts it;
// the documents' 127.0.0.1:8443 and :7443 become the node's free ports.
// A document that starts its own nodes (docs/cluster.md: three nodes on
// 127.0.0.2-4 with the default ports) runs as written in a network namespace
// of its own, so its fixed addresses cannot collide with anything; every
// process it leaves behind is killed at the end.
package docs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sowerproject/sower/internal/testutil"
	"github.com/sowerproject/sower/policy"
)

// walkthrough is a document whose unmarked shell blocks are run, top to
// bottom, in one shell.
type walkthrough struct {
	file string
	// ownNodes: the document starts its own nodes on fixed addresses; it
	// runs in a network namespace of its own instead of against a Leader
	// the test starts.
	ownNodes bool
}

// walkthroughs are the documents a new user follows in this order; each
// runs on a fresh machine of its own, as README.md's "make run" Leader or
// (ownNodes) from nothing.
var walkthroughs = []walkthrough{
	{file: "../README.md"},
	{file: "authn.md"},
	{file: "seeds.md"},
	{file: "cluster.md", ownNodes: true},
}

// block is one fenced block of a document.
type block struct {
	file  string
	line  int // of the opening fence
	lang  string
	marks map[string]bool
	text  string
	// output is the `text output` block that follows a shell block.
	output *block
}

func (b block) String() string { return fmt.Sprintf("%s:%d (```%s)", b.file, b.line, b.lang) }

func (b block) shell() bool {
	switch b.lang {
	case "sh", "bash", "shell", "console":
		return true
	}
	return false
}

// policyBlock says whether a yaml block is Conjur policy: a sequence whose
// first item is a tagged record or statement.
func (b block) policyBlock() bool {
	if b.lang != "yaml" && b.lang != "yml" {
		return false
	}
	for _, l := range strings.Split(b.text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		return strings.HasPrefix(l, "- !")
	}
	return false
}

// parseBlocks returns the fenced blocks of a Markdown document. A fence may
// be indented (inside a list); its content loses that indentation.
func parseBlocks(file string, md []byte) ([]block, error) {
	var out []block
	sc := bufio.NewScanner(bytes.NewReader(md))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var cur *block
	var indent string
	var body strings.Builder
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		if cur == nil {
			if !strings.HasPrefix(trimmed, "```") {
				continue
			}
			fields := strings.Fields(strings.TrimPrefix(trimmed, "```"))
			b := block{file: file, line: n, marks: map[string]bool{}}
			if len(fields) > 0 {
				b.lang = fields[0]
				for _, m := range fields[1:] {
					b.marks[m] = true
				}
			}
			cur, indent = &b, line[:len(line)-len(trimmed)]
			body.Reset()
			continue
		}
		if strings.TrimSpace(line) == "```" {
			cur.text = body.String()
			if cur.lang == "text" && cur.marks["output"] {
				if len(out) == 0 || !(out[len(out)-1].shell() || out[len(out)-1].marks["invalid"]) {
					return nil, fmt.Errorf("%s: an output block must follow a shell block or a policy marked invalid", cur)
				}
				out[len(out)-1].output = cur
			} else {
				out = append(out, *cur)
			}
			cur = nil
			continue
		}
		body.WriteString(strings.TrimPrefix(line, indent))
		body.WriteByte('\n')
	}
	if cur != nil {
		return nil, fmt.Errorf("%s: the block is never closed", cur)
	}
	return out, sc.Err()
}

func documents(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"../README.md"}, files...)
}

func readBlocks(t *testing.T, file string) []block {
	t.Helper()
	md, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := parseBlocks(file, md)
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

// checkPolicy parses and resolves a policy block as the root policy.
func checkPolicy(b block) error {
	doc, err := policy.Parse(filepath.Base(b.file), []byte(b.text))
	if err != nil {
		return err
	}
	_, err = policy.Resolve(doc, policy.ResolveOptions{Account: "default", Owner: policy.NewID("default", policy.KindUser, "admin")})
	return err
}

// TestPolicyBlocks: every policy in the documents parses and resolves, and
// every one marked invalid is refused.
func TestPolicyBlocks(t *testing.T) {
	for _, f := range documents(t) {
		for _, b := range readBlocks(t, f) {
			if !b.policyBlock() || b.marks["illustration"] {
				continue
			}
			err := checkPolicy(b)
			switch {
			case b.marks["invalid"] && err == nil:
				t.Errorf("%s is marked invalid but loads", b)
			case !b.marks["invalid"] && err != nil:
				t.Errorf("%s does not load: %v", b, err)
			case b.marks["invalid"] && b.output != nil:
				// The error the document shows is the one the parser gives.
				if merr := matchOutput(b.output.text, err.Error()); merr != nil {
					t.Errorf("%s is refused with %q, not with the error the document shows (%s): %v", b, err, b.output, merr)
				}
			}
		}
	}
}

// TestShellBlocksAreMarked: outside the walkthroughs, a shell block must be
// marked as an illustration, so that no runnable-looking command goes
// untested without saying so.
func TestShellBlocksAreMarked(t *testing.T) {
	for _, f := range documents(t) {
		if isWalkthrough(f) {
			continue
		}
		for _, b := range readBlocks(t, f) {
			if b.shell() && !b.marks["illustration"] {
				t.Errorf("%s is neither run nor marked: add `illustration` after the language, or list %s in walkthroughs", b, f)
			}
		}
	}
}

func isWalkthrough(f string) bool {
	for _, w := range walkthroughs {
		if filepath.Clean(w.file) == filepath.Clean(f) {
			return true
		}
	}
	return false
}

// TestWalkthroughs runs each walkthrough's runnable shell blocks in order
// against a Leader of its own, and checks the outputs the document shows.
func TestWalkthroughs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node and runs the documents' commands")
	}
	for _, w := range walkthroughs {
		t.Run(filepath.Base(w.file), func(t *testing.T) {
			run := runnable(t, w.file)
			var err error
			if w.ownNodes {
				err = runInNamespace(t, run)
			} else {
				err = runBlocks(t, run)
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// runnable returns a walkthrough's blocks that run: its shell blocks not
// marked as illustrations.
func runnable(t *testing.T, file string) []block {
	t.Helper()
	var run []block
	for _, b := range readBlocks(t, file) {
		if b.shell() && !b.marks["illustration"] {
			run = append(run, b)
		}
	}
	if len(run) == 0 {
		t.Fatalf("%s has no runnable block", file)
	}
	return run
}

// runInNamespace runs blocks as written, in a fresh directory and a new
// network namespace whose loopback is up (127.0.0.0/8 is all local there,
// as on the host). It needs CAP_SYS_ADMIN (root); without it the test
// skips, or under CI fails.
func runInNamespace(t *testing.T, blocks []block) error {
	t.Helper()
	if out, err := exec.Command("unshare", "--net", "--", "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("cannot make a network namespace (unshare --net, ip link: %v: %s): the walkthrough that starts its own nodes runs as root", err, bytes.TrimSpace(out))
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	sower := testutil.BuildSower(t)
	dir := t.TempDir()
	env := []string{"HOME=" + dir, "PATH=" + filepath.Dir(sower) + ":" + os.Getenv("PATH")}
	err := runScriptIn(dir, env, strings.NewReplacer(), blocks, []string{"unshare", "--net", "--", "bash", "-c", "ip link set lo up\n" + scriptMarker + "\n"})
	if err != nil {
		// The nodes' logs say why a step failed.
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		var b strings.Builder
		for _, l := range logs {
			data, _ := os.ReadFile(l)
			lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
			if len(lines) > 15 {
				lines = lines[len(lines)-15:]
			}
			fmt.Fprintf(&b, "\n--- last lines of %s:\n%s", filepath.Base(l), strings.Join(lines, "\n"))
		}
		return fmt.Errorf("%w%s", err, b.String())
	}
	return nil
}

// node is a Leader started from the built binary as `make run` starts it.
type node struct {
	dir, http, grpc string
}

func startNode(t *testing.T, sower string) node {
	t.Helper()
	dir := t.TempDir()
	a := testutil.FreeAddrs(t, 4)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, sower, "server", "--data-dir", "./.sower",
		"--grpc-addr", a[0], "--http-addr", a[1], "--etcd-client-addr", a[2], "--etcd-peer-addr", a[3])
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	// The banner and the log share the terminal, as under `make run`.
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var log syncBuffer
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); pw.Close() }()
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(io.TeeReader(pr, &log))
		found := false
		for sc.Scan() {
			if !found && strings.HasPrefix(sc.Text(), "sower is ready") {
				found = true
				ready <- true
			}
		}
		if !found {
			ready <- false
		}
		close(ready)
	}()
	t.Cleanup(func() {
		cancel()
		for range ready {
		}
	})
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("sower server exited before it was ready:\n%s", log.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("sower server not ready within 2 minutes:\n%s", log.String())
	}
	return node{dir: dir, http: a[1], grpc: a[0]}
}

// syncBuffer is a bytes.Buffer safe for one writer and readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runBlocks runs blocks in one bash, as a user pastes them into one
// terminal, and says which block failed, with its output.
func runBlocks(t *testing.T, blocks []block) error {
	t.Helper()
	sower := testutil.BuildSower(t)
	n := startNode(t, sower)
	// Documents refer to files of the repository by relative path
	// (examples/policy-repo), as a user in the checkout does.
	root, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	if err := os.Symlink(filepath.Join(root, "examples"), filepath.Join(n.dir, "examples")); err != nil {
		return err
	}
	env := []string{"HOME=" + n.dir, "PATH=" + filepath.Dir(sower) + ":" + os.Getenv("PATH"), "SOWER_SERVER=https://" + n.http}
	repl := strings.NewReplacer("127.0.0.1:8443", n.http, "127.0.0.1:7443", n.grpc)
	return runScript(n.dir, env, repl, blocks)
}

// scriptMarker stands for the script in runScriptIn's command.
const scriptMarker = "@@script@@"

// runScript runs blocks in dir with env added to the environment.
func runScript(dir string, env []string, repl *strings.Replacer, blocks []block) error {
	return runScriptIn(dir, env, repl, blocks, []string{"bash", "-c", scriptMarker})
}

// runScriptIn runs blocks with command, whose scriptMarker is replaced by
// the script: in its own process group, killed whole at the end so that no
// process the document left in the background survives the test.
func runScriptIn(dir string, env []string, repl *strings.Replacer, blocks []block, command []string) error {
	const marker = "@@sower-docs-block "
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for i, b := range blocks {
		// A leading newline: the last command may not end its output
		// with one (curl printing a token), and the marker must start a line.
		fmt.Fprintf(&script, "printf '\\n%s%d\\n'\n", marker, i)
		script.WriteString(repl.Replace(b.text))
		script.WriteString("\n")
	}
	fmt.Fprintf(&script, "printf '\\n%send\\n'\n", marker)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := make([]string, len(command))
	for i, a := range command {
		args[i] = strings.ReplaceAll(a, scriptMarker, script.String())
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	out, runErr := cmd.CombinedOutput()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}

	// Split the output at the markers: outputs[i] is block i's.
	outputs := make([]string, len(blocks))
	last := -1
	finished := false
	for _, l := range strings.SplitAfter(string(out), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimRight(l, "\n"), marker); ok {
			if rest == "end" {
				finished = true
				continue
			}
			fmt.Sscan(rest, &last)
			continue
		}
		if last >= 0 {
			outputs[last] += l
		}
	}
	if runErr != nil || !finished {
		if last < 0 {
			return fmt.Errorf("the shell failed before the first block: %v\n%s", runErr, out)
		}
		return fmt.Errorf("%s failed (%v); the block:\n%s\nits output:\n%s", blocks[last], runErr, blocks[last].text, outputs[last])
	}
	for i, b := range blocks {
		if b.output == nil {
			continue
		}
		if err := matchOutput(b.output.text, outputs[i]); err != nil {
			return fmt.Errorf("%s: the output the document shows (%s) was not printed: %v\nprinted:\n%s", b, b.output, err, outputs[i])
		}
	}
	return nil
}

// matchOutput checks that each non-empty line of want appears in got, in
// order, where "…" in a wanted line matches any text.
func matchOutput(want, got string) error {
	lines := strings.Split(got, "\n")
	at := 0
	for _, w := range strings.Split(want, "\n") {
		w = strings.TrimSpace(w)
		if w == "" {
			continue
		}
		found := false
		for ; at < len(lines); at++ {
			if lineMatches(w, lines[at]) {
				found, at = true, at+1
				break
			}
		}
		if !found {
			return fmt.Errorf("no line matches %q", w)
		}
	}
	return nil
}

func lineMatches(pattern, line string) bool {
	pos := 0
	for _, piece := range strings.Split(pattern, "…") {
		i := strings.Index(line[pos:], piece)
		if i < 0 {
			return false
		}
		pos += i + len(piece)
	}
	return true
}

// TestDocsTestCatchesDrift breaks documented examples the way drift
// would, and shows each caught: a command whose flag the CLI no longer
// has, an output the command no longer prints, and a policy that no
// longer parses.
func TestDocsTestCatchesDrift(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nodes and runs the documents' commands")
	}
	run := runnable(t, "../README.md")

	t.Run("command", func(t *testing.T) {
		blocks, at := upTo(t, run, func(b block) bool { return strings.Contains(b.text, "sower policy load root seeds.yml") })
		blocks[at].text = strings.Replace(blocks[at].text, "sower policy load root", "sower policy load --no-such-flag root", 1)
		err := runBlocks(t, blocks)
		if err == nil || !strings.Contains(err.Error(), blocks[at].String()+" failed") || !strings.Contains(err.Error(), "unknown flag: --no-such-flag") {
			t.Fatalf("a documented command that fails was not reported as that block's failure: %v", err)
		}
	})
	t.Run("output", func(t *testing.T) {
		blocks, at := upTo(t, run, func(b block) bool { return b.output != nil })
		out := *blocks[at].output
		out.text = "a line the command never prints\n"
		blocks[at].output = &out
		err := runBlocks(t, blocks)
		if err == nil || !strings.Contains(err.Error(), "was not printed") || !strings.Contains(err.Error(), "a line the command never prints") {
			t.Fatalf("an output the document shows but the command does not print was not reported: %v", err)
		}
	})
	t.Run("policy", func(t *testing.T) {
		var found bool
		for _, f := range documents(t) {
			for _, b := range readBlocks(t, f) {
				if !b.policyBlock() || b.marks["illustration"] || b.marks["invalid"] {
					continue
				}
				if err := checkPolicy(b); err != nil {
					t.Fatalf("%s should load before it is broken: %v", b, err)
				}
				b.text = strings.Replace(b.text, "- !", "- !no-such-record ", 1)
				if err := checkPolicy(b); err == nil {
					t.Fatalf("%s, broken, still loads", b)
				}
				found = true
				break
			}
			if found {
				break
			}
		}
		if !found {
			t.Fatal("no policy block in the documents to break")
		}
	})
}

// upTo returns a copy of blocks up to and including the first that match
// accepts, and that block's index.
func upTo(t *testing.T, blocks []block, match func(block) bool) ([]block, int) {
	t.Helper()
	for i, b := range blocks {
		if match(b) {
			return append([]block(nil), blocks[:i+1]...), i
		}
	}
	t.Fatal("README.md has no block to break: the drift test needs updating")
	return nil, 0
}
