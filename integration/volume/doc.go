// Package volume measures the dedupe table at volume: claim throughput with millions of keys
// against an empty table, the cost of removing expired keys (batched DELETE in the default
// layout, TRUNCATE of a generation in the generations layout) and what it does to concurrent
// writers, and the table's size across fill/expire/purge cycles. cmd/benchvolume runs it and
// prints the tables (`make bench-volume`). Every run works in schemas of its own, dropped at
// the end.
package volume
