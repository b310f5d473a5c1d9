package main

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/sowerproject/sower/cluster"
)

// cgroupMemoryMax is where a cgroup v2 container's memory limit is read
// (a Kubernetes pod's resources.limits.memory ends up there).
var cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// memoryLimitShare is the share of a container's memory limit given to Go
// as its soft limit: the rest is etcd's memory-mapped database and slack.
const memoryLimitShare = 0.85

// parseMemoryLimit reads the memory-limit setting: "auto", "none" or a size
// in bytes with an optional unit (KiB, MiB, GiB, KB, MB, GB; "900MiB").
// It returns the limit in bytes, -1 for none, or 0 for auto.
func parseMemoryLimit(s string) (int64, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "auto", "":
		return 0, nil
	case "none", "0":
		return -1, nil
	}
	limit, ok := parseSize(s)
	if !ok {
		return 0, fmt.Errorf("memory-limit %q: give auto, none, or a size such as 900MiB or 2GiB", s)
	}
	if limit < 64<<20 {
		return 0, fmt.Errorf("memory-limit %q: at least 64MiB; a Leader holds the whole permission graph in memory", s)
	}
	return limit, nil
}

// parseSize reads a positive size in bytes with an optional unit (KiB,
// MiB, GiB, KB, MB, GB; "900MiB").
func parseSize(s string) (int64, bool) {
	num, unit := s, ""
	if i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' }); i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	mult := map[string]float64{"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
		"kb": 1e3, "mb": 1e6, "gb": 1e9}[strings.ToLower(unit)]
	v, err := strconv.ParseFloat(num, 64)
	if mult == 0 || err != nil || v <= 0 || v*mult > math.MaxInt64 {
		return 0, false
	}
	return int64(v * mult), true
}

// parseMinFreeDisk reads the min-free-disk setting: "auto" (or empty) for
// the floor scaled to the file system (0), or a size such as 512MiB.
func parseMinFreeDisk(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "auto") {
		return 0, nil
	}
	n, ok := parseSize(s)
	if !ok {
		return 0, fmt.Errorf("min-free-disk %q: give auto or a size such as 512MiB or 2GiB", s)
	}
	if uint64(n) < cluster.EtcdDiskHeadroom() {
		return 0, fmt.Errorf("min-free-disk %q: at least %d bytes (%.0f MiB): etcd may still write that much (a WAL segment and room for its database) after writes are refused, and exits if it cannot", s, cluster.EtcdDiskHeadroom(), float64(cluster.EtcdDiskHeadroom())/(1<<20))
	}
	return uint64(n), nil
}

// applyMemoryLimit sets Go's soft memory limit: the garbage collector works
// harder as the heap nears it, so the node's memory stays under a
// container's limit instead of being killed at it after a large policy
// load. "auto" leaves a GOMEMLIMIT from the environment alone and otherwise
// takes 85% of the cgroup's memory limit, when there is one.
func applyMemoryLimit(setting string, lg *slog.Logger) error {
	limit, err := parseMemoryLimit(setting)
	if err != nil {
		return &usageError{err}
	}
	switch {
	case limit < 0:
		debug.SetMemoryLimit(math.MaxInt64)
		return nil
	case limit > 0:
		debug.SetMemoryLimit(limit)
		lg.Info("memory limit set", "memory_limit_bytes", limit, "source", "memory-limit")
		return nil
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return nil
	}
	raw, err := os.ReadFile(cgroupMemoryMax)
	if err != nil {
		return nil
	}
	cgroupLimit, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil || cgroupLimit <= 0 { // "max": no limit
		return nil
	}
	limit = int64(float64(cgroupLimit) * memoryLimitShare)
	debug.SetMemoryLimit(limit)
	lg.Info("memory limit set", "memory_limit_bytes", limit, "source", cgroupMemoryMax)
	return nil
}

// defaultGCPercent is the collector's target when neither --gc-percent nor
// GOGC says otherwise: the heap may grow to three times the live data
// before a collection, not Go's two. A seed storm allocates about 150 KB
// per seed and a Follower's read path a few KB per request, all short
// lived: at Go's default the collector took 15–20 % of a Leader's CPU in
// a storm (docs/benchmarks.md). The memory limit (--memory-limit, or 85 %
// of a container's) still bounds the heap: near it, the collector runs
// as often as it must.
const defaultGCPercent = 200

// parseGCPercent reads the gc-percent setting: "auto" (or empty) for 0,
// or a percentage from 25 to 2000.
func parseGCPercent(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "auto") {
		return 0, nil
	}
	p, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
	if err != nil || p < 25 || p > 2000 {
		return 0, fmt.Errorf("gc-percent %q: give auto (GOGC, else %d) or a percentage from 25 to 2000, such as 100 (Go's default)", s, defaultGCPercent)
	}
	return p, nil
}

// applyGCPercent sets the collector's target: the setting, or with "auto"
// GOGC from the environment when there is one, else defaultGCPercent.
func applyGCPercent(setting string, lg *slog.Logger) error {
	p, err := parseGCPercent(setting)
	if err != nil {
		return &usageError{err}
	}
	if p == 0 {
		if os.Getenv("GOGC") != "" {
			return nil
		}
		p = defaultGCPercent
	}
	debug.SetGCPercent(p)
	lg.Debug("garbage collector target set", "gc_percent", p)
	return nil
}

const gcPercentUsage = "garbage collector target, Go's GOGC: auto (GOGC from the environment, else 200: the heap may grow to 3× the live data between collections, trading memory for CPU; --memory-limit still bounds it) or a percentage from 25 to 2000"
