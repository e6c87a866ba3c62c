package engine

import "cmp"

// ValidateJob checks one job as Enqueue does, before any write, naming each bad field with
// prefix (e.g. "jobs[3]."); maxArgsBytes 0 means the default 1 MiB. The router validates a
// whole multi-shard batch with it before sending any part of it.
func ValidateJob(j Job, prefix string, maxArgsBytes int) error {
	return j.validate(prefix, cmp.Or(max(maxArgsBytes, 0), defaultMaxArgsBytes))
}
