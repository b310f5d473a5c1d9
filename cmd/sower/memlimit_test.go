package main

import (
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{
		"auto": 0, "": 0, "none": -1, "0": -1,
		"900MiB": 900 << 20, "1GiB": 1 << 30, "1.5GiB": 3 << 29, "800MB": 800e6, "268435456": 1 << 28, "512 mib": 512 << 20,
	} {
		got, err := parseMemoryLimit(in)
		if err != nil || got != want {
			t.Errorf("parseMemoryLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"lots", "-5MiB", "12TB", "10MiB", "1e3GiB", "MiB"} {
		if _, err := parseMemoryLimit(in); err == nil {
			t.Errorf("parseMemoryLimit(%q) accepted", in)
		}
	}
}

// auto takes 85% of the cgroup's limit, and leaves Go alone when the
// cgroup has none ("max") or GOMEMLIMIT is set.
func TestApplyMemoryLimitFromCgroup(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	file := filepath.Join(t.TempDir(), "memory.max")
	defer func(old string) { cgroupMemoryMax = old }(cgroupMemoryMax)
	cgroupMemoryMax = file
	t.Setenv("GOMEMLIMIT", "")
	os.Unsetenv("GOMEMLIMIT")

	os.WriteFile(file, []byte("1073741824\n"), 0o600)
	debug.SetMemoryLimit(math.MaxInt64)
	if err := applyMemoryLimit("auto", lg); err != nil {
		t.Fatal(err)
	}
	share := memoryLimitShare
	if got, want := debug.SetMemoryLimit(-1), int64(float64(1<<30)*share); got != want {
		t.Fatalf("limit = %d, want %d", got, want)
	}

	os.WriteFile(file, []byte("max\n"), 0o600)
	debug.SetMemoryLimit(math.MaxInt64)
	if err := applyMemoryLimit("auto", lg); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("limit without a cgroup limit = %d, want none", got)
	}

	if err := applyMemoryLimit("700MiB", lg); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != 700<<20 {
		t.Fatalf("explicit limit = %d", got)
	}
	if err := applyMemoryLimit("none", lg); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("limit after none = %d", got)
	}
}

func TestParseGCPercent(t *testing.T) {
	for in, want := range map[string]int{"auto": 0, "": 0, "AUTO": 0, "100": 100, "200%": 200, "25": 25, "2000": 2000} {
		got, err := parseGCPercent(in)
		if err != nil || got != want {
			t.Errorf("parseGCPercent(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"off", "-1", "0", "24", "2001", "lots", "1e3"} {
		if _, err := parseGCPercent(in); err == nil {
			t.Errorf("parseGCPercent(%q) accepted", in)
		}
	}
}

// auto leaves a GOGC from the environment alone and otherwise sets
// defaultGCPercent; a number wins over GOGC.
func TestApplyGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC")
	debug.SetGCPercent(100)
	if err := applyGCPercent("auto", lg); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Fatalf("auto without GOGC: %d, want %d", got, defaultGCPercent)
	}
	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150)
	if err := applyGCPercent("auto", lg); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetGCPercent(100); got != 150 {
		t.Fatalf("auto with GOGC=150: %d", got)
	}
	if err := applyGCPercent("400", lg); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetGCPercent(100); got != 400 {
		t.Fatalf("explicit 400: %d", got)
	}
	if err := applyGCPercent("off", lg); err == nil {
		t.Fatal("off accepted")
	}
}
