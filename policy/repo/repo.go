package repo

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/sowerproject/sower/policy"
)

// ErrLayout is returned for a repository that does not follow the layout.
var ErrLayout = errors.New("repo: unexpected file in policy repository")

// The file groups, as data. Order matters: it is the load order.
var (
	// firstGroup declares what a policy holds; loaded together, replacing.
	firstGroup = []string{"policies.yml", "groups.yml", "layers.yml", "hosts.yml", "webservice.yml", "body.yml"}
	// secondGroup refers to what the policy and its sub-policies declare;
	// appended after the sub-policies.
	secondGroup = []string{"variables.yml", "grants.yml", "permits.yml"}
	// collectionDirs hold more second-group files of their parent policy;
	// they are not policies themselves.
	collectionDirs = []string{"grants", "permits"}
)

// Loads returns the loads that bring account's policies in line with the
// repository in fsys, in the order they must run.
func Loads(fsys fs.FS, account string) ([]policy.LoadRequest, error) {
	var loads []policy.LoadRequest
	if err := walk(fsys, ".", account, policy.RootPolicy, &loads); err != nil {
		return nil, err
	}
	return loads, nil
}

func walk(fsys fs.FS, dir, account, id string, loads *[]policy.LoadRequest) error {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return fmt.Errorf("repo: read %s: %w", dir, err)
	}
	target := policy.NewID(account, policy.KindPolicy, id)
	files := map[string]bool{}
	var subdirs, collections []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "."):
		case e.IsDir() && slices.Contains(collectionDirs, name):
			collections = append(collections, name)
		case e.IsDir():
			subdirs = append(subdirs, name)
		case slices.Contains(firstGroup, name) || slices.Contains(secondGroup, name):
			files[name] = true
		case strings.HasSuffix(name, ".yml") || strings.HasSuffix(name, ".yaml"):
			return fmt.Errorf("%w: %s: a policy folder holds %s (replaced) and %s (appended), and grants/ and permits/ folders",
				ErrLayout, path.Join(dir, name), strings.Join(firstGroup, ", "), strings.Join(secondGroup, ", "))
		}
	}

	var first []policy.File
	for _, name := range firstGroup {
		if files[name] {
			f, err := read(fsys, path.Join(dir, name))
			if err != nil {
				return err
			}
			first = append(first, f)
		}
	}
	if len(first) > 0 {
		*loads = append(*loads, policy.LoadRequest{Policy: target, Mode: policy.Replace, Files: first})
	}

	slices.Sort(subdirs)
	for _, sub := range subdirs {
		subID := sub
		if id != policy.RootPolicy {
			subID = id + "/" + sub
		}
		if err := walk(fsys, path.Join(dir, sub), account, subID, loads); err != nil {
			return err
		}
	}

	var second []string
	for _, name := range secondGroup {
		if files[name] {
			second = append(second, path.Join(dir, name))
		}
	}
	for _, c := range collectionDirs {
		if !slices.Contains(collections, c) {
			continue
		}
		more, err := fs.ReadDir(fsys, path.Join(dir, c))
		if err != nil {
			return fmt.Errorf("repo: read %s: %w", path.Join(dir, c), err)
		}
		for _, e := range more {
			switch name := e.Name(); {
			case e.IsDir() || strings.HasPrefix(name, "."):
			case strings.HasSuffix(name, ".yml") || strings.HasSuffix(name, ".yaml"):
				second = append(second, path.Join(dir, c, name))
			}
		}
	}
	for _, p := range second {
		f, err := read(fsys, p)
		if err != nil {
			return err
		}
		*loads = append(*loads, policy.LoadRequest{Policy: target, Mode: policy.Append, Filename: f.Name, Text: f.Text})
	}
	return nil
}

func read(fsys fs.FS, name string) (policy.File, error) {
	text, err := fs.ReadFile(fsys, name)
	if err != nil {
		return policy.File{}, fmt.Errorf("repo: %w", err)
	}
	return policy.File{Name: path.Clean(name), Text: text}, nil
}
