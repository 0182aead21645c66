package dlq

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/event"
)

// oldRecord is a running replay as a release before NextIndex and AfterSeq
// stored it: progress in one "cursor" (an index for ids, the next DLQ
// sequence for a filter), owned by a process whose lease has lapsed.
func oldRecord(tenant, id, selection string, cursor, upTo uint64, total, replayed int) []byte {
	now := time.Now().UTC()
	return fmt.Appendf(nil, `{"id":%q,"state":"running","source":"replay",%s,"rate":1000,`+
		`"total":%d,"replayed":%d,"failed":0,"skipped":0,"created_at":%q,"started_at":%q,"updated_at":%q,`+
		`"tenant_id":%q,"owner":"own_old","lease_until":%q,"cursor":%d,"up_to":%d,"counted":true}`,
		id, selection, total, replayed, FormatTime(now.Add(-time.Minute)), FormatTime(now.Add(-time.Minute)),
		FormatTime(now.Add(-time.Minute)), tenant, FormatTime(now.Add(-30*time.Second)), cursor, upTo)
}

func TestDecodeRecordMigratesTheOldCursor(t *testing.T) {
	t.Parallel()
	ids, err := decodeRecord(oldRecord("t", "rpl_1", `"ids":[7,9,12]`, 2, 0, 3, 2))
	if err != nil {
		t.Fatal(err)
	}
	if ids.NextIndex != 2 || ids.AfterSeq != 0 || ids.Owner != "own_old" || ids.Replayed != 2 || len(ids.IDs) != 3 {
		t.Fatalf("ids record: %+v, want next index 2", ids)
	}
	filter, err := decodeRecord(oldRecord("t", "rpl_2", `"filter":{"endpoint_id":"ep_1"}`, 43, 50, 9, 4))
	if err != nil {
		t.Fatal(err)
	}
	if filter.AfterSeq != 42 || filter.NextIndex != 0 || filter.UpTo != 50 || filter.Filter.EndpointID != "ep_1" {
		t.Fatalf("filter record: %+v, want after seq 42", filter)
	}
	if got := filter.from(); got.seq != 43 {
		t.Fatalf("filter record continues at %d, want 43", got.seq)
	}
	fresh, err := decodeRecord(oldRecord("t", "rpl_3", `"filter":{}`, 0, 50, 9, 0))
	if err != nil {
		t.Fatal(err)
	}
	if fresh.AfterSeq != 0 || fresh.NextIndex != 0 {
		t.Fatalf("record without progress: %+v", fresh)
	}
}

// A record written now round-trips, and still carries "cursor" in its old
// meaning for a process of the earlier release.
func TestEncodeRecordKeepsTheOldCursorForAnEarlierRelease(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name       string
		rec        record
		wantCursor uint64
	}{
		{"ids", record{Replay: Replay{ID: "rpl_1", IDs: []uint64{7, 9, 12}}, NextIndex: 2}, 2},
		{"filter", record{Replay: Replay{ID: "rpl_2", Filter: &Filter{}}, AfterSeq: 42}, 43},
		{"filter, nothing handled", record{Replay: Replay{ID: "rpl_3", Filter: &Filter{}}}, 0},
	} {
		b, err := c.rec.encode()
		if err != nil {
			t.Fatal(err)
		}
		var old struct {
			Cursor uint64 `json:"cursor"`
		}
		if err := json.Unmarshal(b, &old); err != nil || old.Cursor != c.wantCursor {
			t.Errorf("%s: cursor %d (%v), want %d in %s", c.name, old.Cursor, err, c.wantCursor, b)
		}
		got, err := decodeRecord(b)
		if err != nil || got.NextIndex != c.rec.NextIndex || got.AfterSeq != c.rec.AfterSeq {
			t.Errorf("%s: decoded %+v (%v), want %+v", c.name, got, err, c.rec)
		}
	}
	// An earlier release that saves the record drops next_index and
	// after_seq: its cursor is what counts then.
	b := []byte(`{"id":"rpl_4","state":"running","filter":{},"tenant_id":"t","cursor":60}`)
	if got, err := decodeRecord(b); err != nil || got.AfterSeq != 59 {
		t.Fatalf("record saved by an earlier release: %+v (%v), want after seq 59", got, err)
	}
}

// Replays that were running, stored by the earlier release, when it was
// replaced (its lease lapsed) continue where they were: what they had
// handled is not replayed again (those dead letters are still in the DLQ
// here, so a wrong resume would replay them), and nothing is skipped.
func TestReplayStoredInTheOldShapeResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("a")
	byFilter, byID := e.endpoint(a, []string{"*"}, true), e.endpoint(a, []string{"*"}, true)
	f := e.deadLetters(a, byFilter, 5)
	l := e.deadLetters(a, byID, 3)
	svc, _ := e.service()

	filterID, idsID := event.NewID("rpl"), event.NewID("rpl")
	filterRec := oldRecord(a, filterID, fmt.Sprintf(`"filter":{"endpoint_id":%q}`, byFilter), f[1]+1, l[2], 5, 2)
	idsRec := oldRecord(a, idsID, fmt.Sprintf(`"ids":[%d,%d,%d]`, l[0], l[1], l[2]), 1, 0, 3, 1)
	for id, b := range map[string][]byte{filterID: filterRec, idsID: idsRec} {
		if _, err := svc.kv.Create(e.ctx, replayKey(a, id), b); err != nil {
			t.Fatal(err)
		}
	}

	for id, total := range map[string]int{filterID: 5, idsID: 3} {
		r := e.waitDone(svc, a, id, 10*time.Second)
		if r.State != StateDone || r.Total != total || r.Replayed != total || r.Failed != 0 || r.Skipped != 0 {
			t.Errorf("resumed replay %s: %+v, want all %d replayed", id, r, total)
		}
	}
	left := e.inDLQ()
	for _, seq := range []uint64{f[0], f[1], l[0]} {
		if !left[seq] {
			t.Errorf("dead letter %d, handled before the upgrade, was replayed again", seq)
		}
	}
	noDuplicates(t, e, []uint64{f[2], f[3], f[4], l[1], l[2]})
}
