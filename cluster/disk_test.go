package cluster

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

func TestAutoMinFreeDisk(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ total, want uint64 }{
		"large file system keeps the default": {100 << 30, DefaultMinFreeDisk},
		"1 GiB keeps a tenth":                 {1 << 30, (1 << 30) / 10},
		"tiny file system keeps etcd's need":  {200 << 20, EtcdDiskHeadroom()},
	} {
		if got := AutoMinFreeDisk(tc.total); got != tc.want {
			t.Errorf("%s: AutoMinFreeDisk(%d) = %d, want %d", name, tc.total, got, tc.want)
		}
	}
}

func TestGuardDiskRefusesAFloorBelowEtcdsNeed(t *testing.T) {
	e := startMember(t, newSpec(t, "n1"))
	_, err := e.GuardDisk(DiskConfig{Dir: t.TempDir(), MinFree: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "min-free-disk") {
		t.Fatalf("GuardDisk with a 1 MiB floor: %v, want an error naming min-free-disk", err)
	}
}

// TestDiskGuardRaisesAndDisarmsTheAlarm runs the guard over a real member
// with a file system whose free space the test sets: below the floor,
// writes are refused by the guard and by etcd itself (the NOSPACE alarm),
// reads and deletes go on; above it, the alarm is disarmed and writes
// resume.
func TestDiskGuardRaisesAndDisarmsTheAlarm(t *testing.T) {
	e := startMember(t, newSpec(t, "n1"))
	var free atomic.Uint64
	free.Store(4 << 30)
	d, err := e.GuardDisk(DiskConfig{Dir: "/data", Interval: 20 * time.Millisecond, Logger: logger(t),
		statfs: func(string) (DiskUsage, error) { return DiskUsage{Free: free.Load(), Total: 10 << 30}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if d.Floor() != DefaultMinFreeDisk {
		t.Fatalf("floor %d, want the default %d", d.Floor(), DefaultMinFreeDisk)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()

	cli := e.Client()
	put := func() error {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		defer pcancel()
		_, err := cli.Put(pctx, "/k", "v")
		return err
	}
	if err := d.Check(100); err != nil {
		t.Fatalf("Check with room: %v", err)
	}
	if err := put(); err != nil {
		t.Fatal(err)
	}

	free.Store(100 << 20)
	err = d.Check(0)
	var nse *NoSpaceError
	if !errors.As(err, &nse) || !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Check below the floor: %v, want a *NoSpaceError", err)
	}
	if nse.Free != 100<<20 || nse.Required != DefaultMinFreeDisk {
		t.Errorf("error says %d free, %d required; want %d and %d", nse.Free, nse.Required, 100<<20, DefaultMinFreeDisk)
	}
	for _, want := range []string{"104857600 bytes", "268435456 bytes", "--min-free-disk", "without a restart"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	eventually(t, "etcd to refuse puts (NOSPACE alarm)", func() bool {
		return errors.Is(put(), rpctypes.ErrNoSpace)
	})
	if _, err := cli.Get(ctx, "/k"); err != nil {
		t.Errorf("read while full: %v", err)
	}
	if _, err := cli.Delete(ctx, "/k"); err != nil {
		t.Errorf("delete while full: %v", err)
	}

	// Back above the floor but within its margin: still refused.
	free.Store(DefaultMinFreeDisk + 1)
	if err := d.Check(0); !errors.Is(err, ErrNoSpace) {
		t.Errorf("Check just above the floor while the alarm is raised: %v, want refused until the margin", err)
	}
	free.Store(4 << 30)
	eventually(t, "puts to succeed again", func() bool { return put() == nil })
	if err := d.Check(0); err != nil {
		t.Errorf("Check after recovery: %v", err)
	}
	// A large write is measured against the floor plus its cost.
	free.Store(DefaultMinFreeDisk + 1<<20)
	if err := d.Check(1 << 20); !errors.As(err, &nse) || nse.Required != DefaultMinFreeDisk+writeCostFactor<<20 {
		t.Errorf("Check of a 1 MiB write with 1 MiB over the floor: %v, want refused needing floor + %d MiB", err, writeCostFactor)
	}
}

// TestDiskGuardReportsAnotherMembersAlarm: in a two-member cluster, a
// member whose disk is low holds the alarm for itself; the other member's
// guard then refuses writes naming it and leaves that alarm to its owner,
// but lets a removal through and, once the member is removed, disarms the
// alarm nothing else would.
func TestDiskGuardReportsAnotherMembersAlarm(t *testing.T) {
	a, b := newSpec(t, "n1"), newSpec(t, "n2")
	a.dir, b.dir = filepath.Join(t.TempDir(), "etcd"), filepath.Join(t.TempDir(), "etcd")
	a.initial = "n1=" + a.peerURL() + ",n2=" + b.peerURL()
	b.initial = a.initial
	members := make([]*Etcd, 2)
	var wg sync.WaitGroup
	for i, s := range []memberSpec{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); members[i] = startMember(t, s) }()
	}
	wg.Wait()
	if members[0] == nil || members[1] == nil {
		t.Fatal("the two members did not start")
	}
	guard := func(e *Etcd, free uint64) *Disk {
		d, err := e.GuardDisk(DiskConfig{Dir: "/data", Logger: logger(t),
			statfs: func(string) (DiskUsage, error) { return DiskUsage{Free: free, Total: 10 << 30}, nil }})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	ctx := context.Background()
	full, fine := guard(members[1], 10<<20), guard(members[0], 4<<30)
	full.reconcile(ctx) // n2 raises its alarm
	eventually(t, "n1 to see n2's alarm", func() bool { return fine.Check(0) != nil })
	var nse *NoSpaceError
	if err := fine.Check(0); !errors.As(err, &nse) || nse.Member != "n2" || !strings.Contains(err.Error(), "member n2 raised etcd's NOSPACE alarm") {
		t.Fatalf("Check with n2's alarm: %v, want a *NoSpaceError naming member n2", err)
	}
	if err := fine.CheckLocal(0); err != nil {
		t.Errorf("CheckLocal on n1, whose disk is fine: %v", err)
	}
	// n1's own disk is fine: a round of its guard leaves n2's alarm.
	fine.reconcile(ctx)
	if err := fine.Check(0); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("n2's alarm was disarmed by n1's guard while n2 is a member: Check %v", err)
	}
	// Removed (a deletion, which etcd takes under the alarm), n2's alarm
	// is n1's to disarm.
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// etcd refuses a removal until the members have been connected a
	// few seconds (see retryUnhealthy).
	if err := retryUnhealthy(rctx, func() error {
		_, err := members[0].Client().MemberRemove(rctx, uint64(members[1].e.Server.MemberID()))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// n1 applies the removal when raft's leader has (it may be n2).
	eventually(t, "n1's guard to disarm the removed member's alarm", func() bool {
		fine.reconcile(ctx)
		return fine.Check(0) == nil
	})
}

// TestDiskGuardDisarmsTheQuotaAlarmUnderTheQuota: the alarm etcd raises
// itself when its database reaches the quota stays while the database is
// at the quota (the error says so and what to do), and the guard disarms it
// once the database is under the quota again.
func TestDiskGuardDisarmsTheQuotaAlarmUnderTheQuota(t *testing.T) {
	e := startMember(t, newSpec(t, "n1"))
	var quota atomic.Int64
	quota.Store(1) // any database is over it
	d, err := e.GuardDisk(DiskConfig{Dir: "/data", Logger: logger(t),
		statfs: func(string) (DiskUsage, error) { return DiskUsage{Free: 4 << 30, Total: 10 << 30}, nil },
		quota:  quota.Load})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// What etcd does when a put would exceed the quota.
	if _, err := e.e.Server.Alarm(actx, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: uint64(e.e.Server.MemberID()), Alarm: pb.AlarmType_NOSPACE}); err != nil {
		t.Fatal(err)
	}
	var nse *NoSpaceError
	if err := d.Check(0); !errors.As(err, &nse) || nse.Quota != 1 || !strings.Contains(err.Error(), "etcdctl defrag") {
		t.Fatalf("Check at the quota: %v, want a *NoSpaceError naming the quota and what to do", err)
	}
	d.reconcile(ctx)
	if err := d.Check(0); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("the alarm was disarmed with the database at its quota: Check %v", err)
	}
	quota.Store(1 << 30)
	d.reconcile(ctx)
	if err := d.Check(0); err != nil {
		t.Fatalf("Check once the database is under the quota: %v", err)
	}
	if _, err := e.Client().Put(actx, "/k", "v"); err != nil {
		t.Fatalf("a put after the alarm was disarmed: %v", err)
	}
}
