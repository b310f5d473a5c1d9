// Package clustertest holds the multi-process tests and benchmarks of the
// Leader/Standby quorum: real sower processes on distinct loopback
// addresses (127.0.0.2, .3, .4), joined from real Standby seeds, killed
// with SIGKILL, restarted and re-enrolled, and checked against Debian's
// etcdctl. It has no code of its own outside its tests.
//
//	go test ./test/cluster/                     # the acceptance tests
//	go test ./test/cluster/ -run '^$' -bench .  # failover and join timings
package clustertest
