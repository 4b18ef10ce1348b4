package main

import (
	"testing"
	"time"
)

func TestRedisStats(t *testing.T) {
	var before, after redisStats
	before.commands, after.commands = map[string]int64{}, map[string]int64{}
	parseRedisInfo("# Stats\r\ntotal_commands_processed:10\r\ntotal_reads_processed:100\r\n# Commandstats\r\n"+
		"cmdstat_evalsha:calls=5,usec=50,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n"+
		"cmdstat_info:calls=1,usec=26,usec_per_call=26.00,rejected_calls=0,failed_calls=0\r\n", &before)
	parseRedisInfo("total_reads_processed:1103\r\n"+
		"cmdstat_evalsha:calls=1005,usec=50,usec_per_call=10.00\r\n"+
		"cmdstat_set:calls=500,usec=8\r\n"+
		"cmdstat_info:calls=2,usec=26\r\n"+
		"cmdstat_client|setinfo:calls=4,usec=1\r\n", &after)
	before.cpu, after.cpu = time.Second, 3*time.Second
	d := after.since(before)
	if d.reads != 1000 || d.commands["evalsha"] != 1000 || d.commands["set"] != 500 || len(d.commands) != 2 {
		t.Fatalf("since: %+v", d)
	}
	cpu, reads, scripts, others := d.perRequest(1000)
	if cpu != 2*time.Millisecond || reads != 1 || scripts != 1 || others != "SET 0.50" {
		t.Errorf("per request: %v %v %v %q", cpu, reads, scripts, others)
	}
	if _, _, _, others := d.perRequest(0); others != "–" {
		t.Errorf("no requests: %q", others)
	}
}
