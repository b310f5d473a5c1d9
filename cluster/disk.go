package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/storage"
	"go.etcd.io/etcd/server/v3/storage/wal"
)

// ErrNoSpace is wrapped by every write refused because a member's disk (or
// etcd's database quota) is full; errors.As finds the *NoSpaceError that
// says which and what to do.
var ErrNoSpace = errors.New("cluster: not enough disk space for writes")

// DefaultMinFreeDisk is the free space a member's file system keeps by
// default on a file system of 2.5 GiB or more (see AutoMinFreeDisk).
const DefaultMinFreeDisk uint64 = 256 << 20

// EtcdDiskHeadroom is the least free space the floor may be: what etcd may
// still write after writes are refused without failing. etcd treats a
// failed write of its WAL or database as fatal (the process exits), and
// keeps writing after sower refuses writes: the raft entries of alarms,
// lease expiries and elections, and, whenever its WAL segment fills, a new
// preallocated segment of wal.SegmentSizeBytes (64 MB). So the floor is one
// segment plus 32 MiB for the database's growth and snapshots.
func EtcdDiskHeadroom() uint64 { return uint64(wal.SegmentSizeBytes) + 32<<20 }

// AutoMinFreeDisk is the floor for a file system of total bytes when none
// is configured: a tenth of it, at least EtcdDiskHeadroom and at most
// DefaultMinFreeDisk, so that a small volume is not refused writes at a
// quarter full and a large one keeps a fixed reserve.
func AutoMinFreeDisk(total uint64) uint64 {
	return max(EtcdDiskHeadroom(), min(total/10, DefaultMinFreeDisk))
}

// writeCostFactor is how many times its request's size a write may cost on
// disk: the raft entry in the WAL, the value in the database (copy on
// write rewrites its pages), and the keys a policy load derives from its
// text. A write is refused unless the floor plus this much is free.
const writeCostFactor = 8

// DiskConfig configures a member's disk guard.
type DiskConfig struct {
	// Dir is a directory on the file system etcd writes to (the node's
	// data dir).
	Dir string
	// MinFree is the free space, in bytes, below which writes are refused
	// and the member raises etcd's NOSPACE alarm; zero means
	// AutoMinFreeDisk of the file system's size. It must be at least
	// EtcdDiskHeadroom.
	MinFree uint64
	// Interval is how often free space is read; zero means 1s. Every
	// write also reads it.
	Interval time.Duration
	Logger   *slog.Logger

	// statfs replaces the file system query in tests, quota etcd's
	// database quota.
	statfs func(dir string) (DiskUsage, error)
	quota  func() int64
}

// DiskUsage is a file system's size and the space an unprivileged writer
// may still use, in bytes.
type DiskUsage struct {
	Free, Total uint64
}

// StatDisk reads the usage of the file system holding dir.
func StatDisk(dir string) (DiskUsage, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return DiskUsage{}, fmt.Errorf("cluster: free space of %s: %w", dir, err)
	}
	bs := uint64(st.Bsize)
	return DiskUsage{Free: uint64(st.Bavail) * bs, Total: uint64(st.Blocks) * bs}, nil
}

// NoSpaceError is a write refused for lack of space, saying whose and what
// to do.
type NoSpaceError struct {
	// Member names the member whose disk is full when it is another
	// member (its NOSPACE alarm refuses writes cluster-wide); empty for
	// this node.
	Member string
	// Dir, Free and Required describe this node's file system: the bytes
	// free now and the bytes a write needs free (the floor plus the
	// write's cost).
	Dir            string
	Free, Required uint64
	// DBSize and Quota are set when etcd's database reached its quota.
	DBSize, Quota int64
	// Resuming is set when space is back and this member's alarm is
	// being disarmed.
	Resuming bool
}

func (e *NoSpaceError) Error() string {
	switch {
	case e.Resuming:
		return fmt.Sprintf("%v: disk space is back and etcd's NOSPACE alarm is being disarmed; try again in a second", ErrNoSpace)
	case e.Quota > 0:
		return fmt.Sprintf("%v: etcd's database is %s, at its quota of %s (etcd's NOSPACE alarm); writes are refused until it is compacted and defragmented below the quota (etcdctl compact, then etcdctl defrag), after which they resume without a restart",
			ErrNoSpace, sizeOf(uint64(e.DBSize)), sizeOf(uint64(e.Quota)))
	case e.Member != "":
		return fmt.Sprintf("%v: member %s raised etcd's NOSPACE alarm (its disk is below its --min-free-disk floor), so every member refuses writes; free space on %s's data-dir file system and writes resume within seconds, without a restart",
			ErrNoSpace, e.Member, e.Member)
	default:
		return fmt.Sprintf("%v: the file system of %s has %s free and a write needs %s free (the --min-free-disk floor plus the write); free space on it or grow it and writes resume within seconds, without a restart; reads go on meanwhile",
			ErrNoSpace, e.Dir, sizeOf(e.Free), sizeOf(e.Required))
	}
}

func (e *NoSpaceError) Unwrap() error { return ErrNoSpace }

// sizeOf names a byte count exactly and in MiB.
func sizeOf(n uint64) string {
	return fmt.Sprintf("%d bytes (%.1f MiB)", n, float64(n)/(1<<20))
}

// Disk keeps a member from filling its disk. While free space on the data
// dir's file system is below the floor, Check refuses writes and the member
// holds etcd's NOSPACE alarm, which makes every member refuse puts (a
// Standby's disk fills with the Leader's writes too); once space is back
// (and etcd's database is under its quota) the alarm is disarmed and
// writes resume, without a restart. Reads, watches, lease renewals and
// deletes go on throughout.
type Disk struct {
	e     *Etcd
	c     DiskConfig
	floor uint64
	kick  chan struct{}

	mu   sync.Mutex
	last DiskUsage
	low  bool // last reading was below the floor
}

// GuardDisk returns the guard of this member's disk; call Run to keep the
// alarm in step with the disk.
func (e *Etcd) GuardDisk(c DiskConfig) (*Disk, error) {
	if c.Dir == "" {
		return nil, errors.New("cluster: the disk guard needs the data directory")
	}
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.statfs == nil {
		c.statfs = StatDisk
	}
	if c.MinFree != 0 && c.MinFree < EtcdDiskHeadroom() {
		return nil, fmt.Errorf("cluster: min-free-disk %s is below what etcd may still write after writes are refused, %s (a WAL segment and room for its database); set at least that", sizeOf(c.MinFree), sizeOf(EtcdDiskHeadroom()))
	}
	u, err := c.statfs(c.Dir)
	if err != nil {
		return nil, err
	}
	floor := c.MinFree
	if floor == 0 {
		floor = AutoMinFreeDisk(u.Total)
	}
	d := &Disk{e: e, c: c, floor: floor, kick: make(chan struct{}, 1), last: u, low: u.Free < floor}
	return d, nil
}

// Floor is the free space, in bytes, below which writes are refused.
func (d *Disk) Floor() uint64 { return d.floor }

// Usage is the file system's usage as last read.
func (d *Disk) Usage() DiskUsage {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// Refusing reports, from the last reading and this member's view of the
// alarms, whether writes are refused now.
func (d *Disk) Refusing() bool {
	d.mu.Lock()
	low := d.low
	d.mu.Unlock()
	return low || d.alarmErr() != nil
}

// Check reads free space now and reports whether a write of size bytes (its
// request's size; 0 when unknown) may go ahead: nil, or a *NoSpaceError
// when this node's disk is below the floor plus the write's cost or any
// member's NOSPACE alarm is raised. A reading below the floor raises the
// alarm at once rather than at the next interval.
func (d *Disk) Check(size int) error {
	if err := d.CheckLocal(size); err != nil {
		return err
	}
	return d.alarmErr()
}

// CheckLocal is Check for this node's disk alone, ignoring the alarms of
// other members: for a write that only removes (taking a member whose disk
// is full out of the cluster must not be refused because of it).
func (d *Disk) CheckLocal(size int) error {
	u, err := d.c.statfs(d.c.Dir)
	if err != nil {
		// Not knowing is no reason to refuse: etcd's own alarm still
		// refuses what it cannot store.
		d.c.Logger.Warn("cannot read the data dir's free space", "err", err)
		return nil
	}
	if low, _ := d.record(u); low {
		d.wake()
	}
	need := d.floor + uint64(max(size, 0))*writeCostFactor
	if u.Free < need {
		return &NoSpaceError{Dir: d.c.Dir, Free: u.Free, Required: need}
	}
	return nil
}

// record stores a reading; it reports whether it is below the floor, and
// whether the one before was.
func (d *Disk) record(u DiskUsage) (low, wasLow bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	wasLow = d.low
	d.last, d.low = u, u.Free < d.floor
	return d.low, wasLow
}

func (d *Disk) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// alarmErr reports a NOSPACE alarm held by any member, from this member's
// own view (no request to etcd).
func (d *Disk) alarmErr() error {
	var names []string
	self := uint64(d.e.e.Server.MemberID())
	for _, a := range d.e.e.Server.Alarms() {
		if a.Alarm != pb.AlarmType_NOSPACE {
			continue
		}
		if a.MemberID == self {
			if size, quota := d.dbSize(); size >= quota {
				return &NoSpaceError{DBSize: size, Quota: quota}
			}
			u := d.Usage()
			if need := d.resumeAt(); u.Free < need {
				return &NoSpaceError{Dir: d.c.Dir, Free: u.Free, Required: need}
			}
			d.wake()
			return &NoSpaceError{Resuming: true}
		}
		name := d.e.MemberName(a.MemberID)
		if name == "" {
			name = fmt.Sprintf("%x", a.MemberID)
		}
		names = append(names, name)
	}
	if len(names) > 0 {
		sort.Strings(names)
		return &NoSpaceError{Member: strings.Join(names, ", ")}
	}
	return nil
}

// dbSize is etcd's database size and its quota.
func (d *Disk) dbSize() (size, quota int64) {
	quota = d.e.e.Config().QuotaBackendBytes
	if d.c.quota != nil {
		quota = d.c.quota()
	}
	if quota <= 0 {
		quota = storage.DefaultQuotaBytes
	}
	return d.e.e.Server.Backend().Size(), quota
}

// Start runs Run on a goroutine of its own until the returned stop is
// called; stop waits for it to end.
func (d *Disk) Start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	return func() { cancel(); <-done }
}

// Run reads free space every Interval (and when a write found it low) and
// keeps this member's NOSPACE alarm in step, until ctx ends. Errors of the
// alarm requests are logged and tried again; they never stop the node.
func (d *Disk) Run(ctx context.Context) error {
	t := time.NewTicker(d.c.Interval)
	defer t.Stop()
	for {
		d.reconcile(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-d.kick:
		}
	}
}

// reconcile raises this member's alarm while its disk is below the floor
// and disarms it once free space is back above the floor (with a margin,
// so that a disk at the edge does not flap) and the database is under its
// quota: the alarm etcd raises itself at the quota is disarmed too once
// compaction and defragmentation brought the database under it.
func (d *Disk) reconcile(ctx context.Context) {
	u, err := d.c.statfs(d.c.Dir)
	if err != nil {
		d.c.Logger.Warn("cannot read the data dir's free space", "err", err)
		return
	}
	low, wasLow := d.record(u)
	self := uint64(d.e.e.Server.MemberID())
	held := false
	for _, a := range d.e.e.Server.Alarms() {
		switch {
		case a.Alarm != pb.AlarmType_NOSPACE:
		case a.MemberID == self:
			held = true
		case d.e.e.Server.Cluster().Member(types.ID(a.MemberID)) == nil:
			// A member removed while its disk was full: nothing will
			// disarm its alarm but another member. (A member's alarm
			// is applied after the member was added, so one this
			// member does not know is gone.)
			d.c.Logger.Warn("disarming the NOSPACE alarm of a member no longer in the cluster", "member_id", fmt.Sprintf("%x", a.MemberID))
			d.alarmOf(ctx, pb.AlarmRequest_DEACTIVATE, a.MemberID)
		}
	}
	size, quota := d.dbSize()
	switch {
	case low && !held:
		d.c.Logger.Error("the data dir's disk is below its free-space floor: refusing writes (etcd NOSPACE alarm) until space is freed; reads go on",
			"dir", d.c.Dir, "free_bytes", u.Free, "floor_bytes", d.floor, "flag", "--min-free-disk")
		d.alarm(ctx, pb.AlarmRequest_ACTIVATE)
	case held && u.Free >= d.resumeAt() && size < quota:
		d.c.Logger.Warn("disk space is back: disarming etcd's NOSPACE alarm; writes resume",
			"dir", d.c.Dir, "free_bytes", u.Free, "floor_bytes", d.floor, "db_bytes", size, "quota_bytes", quota)
		d.alarm(ctx, pb.AlarmRequest_DEACTIVATE)
	case held && !low && size >= quota && wasLow:
		d.c.Logger.Error("disk space is back but etcd's database is at its quota; compact and defragment it to resume writes",
			"db_bytes", size, "quota_bytes", quota)
	}
}

// resumeAt is the free space at which a raised alarm is disarmed: the
// floor and a sixteenth, so that a disk at the edge does not flap.
func (d *Disk) resumeAt() uint64 { return d.floor + d.floor/16 }

// alarmTimeout bounds one alarm request (a raft proposal: it needs a
// quorum).
const alarmTimeout = 5 * time.Second

func (d *Disk) alarm(ctx context.Context, action pb.AlarmRequest_AlarmAction) {
	d.alarmOf(ctx, action, uint64(d.e.e.Server.MemberID()))
}

func (d *Disk) alarmOf(ctx context.Context, action pb.AlarmRequest_AlarmAction, member uint64) {
	actx, cancel := context.WithTimeout(ctx, alarmTimeout)
	defer cancel()
	_, err := d.e.e.Server.Alarm(actx, &pb.AlarmRequest{Action: action, MemberID: member, Alarm: pb.AlarmType_NOSPACE})
	if err != nil && ctx.Err() == nil {
		d.c.Logger.Warn("etcd NOSPACE alarm request failed; trying again", "action", action.String(), "err", err)
	}
}
