package history

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// Memory is an in-process index for the all-in-one running without Redis.
// It is lost with the process and rebuilt from the streams at start, like
// a flushed Redis.
type Memory struct {
	retention time.Duration
	now       func() time.Time

	mu        sync.Mutex
	marker    bool
	attempts  map[string]map[string]Attempt // tenant -> id -> attempt
	endpoints map[string][]entry            // tenant:endpoint[:status] -> ascending (score, id)
	events    map[string]*memEvent          // tenant:event id
	lastSweep time.Time
}

type entry struct {
	score int64
	id    string
}

func compareEntry(a, b entry) int {
	if c := cmp.Compare(a.score, b.score); c != 0 {
		return c
	}
	return cmp.Compare(a.id, b.id)
}

type memEvent struct {
	record   *EventRecord
	attempts map[string]bool
	dead     map[DeadLetter]bool
	last     time.Time
}

// NewMemory returns an empty in-process index.
func NewMemory(retention time.Duration) *Memory {
	if retention <= 0 {
		retention = DefaultRetention
	}
	return &Memory{retention: retention, now: time.Now, attempts: map[string]map[string]Attempt{},
		endpoints: map[string][]entry{}, events: map[string]*memEvent{}}
}

func epKey(tenant, endpoint string, s Status) string {
	return tenant + ":" + endpoint + ":" + string(s)
}

func (m *Memory) event(tenant, id string) *memEvent {
	k := tenant + ":" + id
	e := m.events[k]
	if e == nil {
		e = &memEvent{attempts: map[string]bool{}, dead: map[DeadLetter]bool{}}
		m.events[k] = e
	}
	return e
}

// Apply implements Index.
func (m *Memory) Apply(_ context.Context, b *Batch) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	cutoff := now.Add(-m.retention)
	for _, e := range b.Events {
		if e.AcceptedAt.After(cutoff) {
			rec := e.EventRecord
			ev := m.event(e.Tenant, e.ID)
			ev.record, ev.last = &rec, maxTime(ev.last, e.AcceptedAt)
		}
	}
	for _, a := range b.Attempts {
		if !a.At.After(cutoff) {
			continue
		}
		byID := m.attempts[a.Tenant]
		if byID == nil {
			byID = map[string]Attempt{}
			m.attempts[a.Tenant] = byID
		}
		if _, dup := byID[a.ID]; dup {
			continue
		}
		byID[a.ID] = a.Attempt
		en := entry{a.At.UnixMilli(), a.ID}
		for _, k := range []string{epKey(a.Tenant, a.EndpointID, StatusAll), epKey(a.Tenant, a.EndpointID, a.Status)} {
			list := m.endpoints[k]
			i, _ := slices.BinarySearchFunc(list, en, compareEntry)
			m.endpoints[k] = slices.Insert(list, i, en)
		}
		ev := m.event(a.Tenant, a.EventID)
		ev.attempts[a.ID], ev.last = true, maxTime(ev.last, a.At)
	}
	for _, d := range b.DeadLetters {
		if d.At.After(cutoff) {
			ev := m.event(d.Tenant, d.EventID)
			ev.dead[d.DeadLetter], ev.last = true, maxTime(ev.last, d.At)
		}
	}
	if now.Sub(m.lastSweep) > time.Minute {
		m.sweep(cutoff)
		m.lastSweep = now
	}
	return m.marker, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sweep drops everything older than the retention.
func (m *Memory) sweep(cutoff time.Time) {
	c := cutoff.UnixMilli()
	for tenant, byID := range m.attempts {
		for id, a := range byID {
			if !a.At.After(cutoff) {
				delete(byID, id)
			}
		}
		if len(byID) == 0 {
			delete(m.attempts, tenant)
		}
	}
	for k, list := range m.endpoints {
		i, _ := slices.BinarySearchFunc(list, entry{c + 1, ""}, compareEntry)
		if list = list[i:]; len(list) == 0 {
			delete(m.endpoints, k)
		} else {
			m.endpoints[k] = slices.Clone(list)
		}
	}
	for k, ev := range m.events {
		if !ev.last.After(cutoff) {
			delete(m.events, k)
		}
	}
}

// Marker implements Index.
func (m *Memory) Marker(context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.marker, nil
}

// Lock implements Index: one process, nobody to exclude.
func (m *Memory) Lock(context.Context, time.Duration) (bool, error) { return true, nil }

// SetMarker implements Index.
func (m *Memory) SetMarker(context.Context) error {
	m.mu.Lock()
	m.marker = true
	m.mu.Unlock()
	return nil
}

// Attempts implements Index.
func (m *Memory) Attempts(_ context.Context, tenant, endpoint string, q Query) (Page, error) {
	var p Page
	m.mu.Lock()
	defer m.mu.Unlock()
	list := m.endpoints[epKey(tenant, endpoint, q.Status)]
	end := len(list) // exclusive: the page starts at end-1 and goes down
	if q.Cursor != "" {
		c, err := decodeCursor(q.Cursor)
		if err != nil {
			return p, err
		}
		end, _ = slices.BinarySearchFunc(list, entry{c.Score, c.Member}, compareEntry)
	}
	cutoff := m.now().Add(-m.retention)
	for i := end - 1; i >= 0; i-- {
		a, ok := m.attempts[tenant][list[i].id]
		if !ok || !a.At.After(cutoff) {
			break
		}
		if len(p.Attempts) == q.Limit {
			last := list[i+1]
			p.NextCursor = cursor{Score: last.score, Member: last.id}.encode()
			break
		}
		p.Attempts = append(p.Attempts, a)
	}
	return p, nil
}

// Counts implements Index.
func (m *Memory) Counts(_ context.Context, tenant string, endpoints []string, since time.Time) (map[string]Counts, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	from := maxTime(since, m.now().Add(-m.retention)).UnixMilli()
	count := func(k string) int {
		list := m.endpoints[k]
		i, _ := slices.BinarySearchFunc(list, entry{from, ""}, compareEntry)
		return len(list) - i
	}
	out := make(map[string]Counts, len(endpoints))
	for _, ep := range endpoints {
		out[ep] = Counts{Succeeded: count(epKey(tenant, ep, StatusSucceeded)), Failed: count(epKey(tenant, ep, StatusFailed))}
	}
	return out, nil
}

// Event implements Index.
func (m *Memory) Event(_ context.Context, tenant, id string) (EventEntries, error) {
	var out EventEntries
	m.mu.Lock()
	defer m.mu.Unlock()
	ev := m.events[tenant+":"+id]
	if ev == nil {
		return out, nil
	}
	if ev.record != nil {
		rec := *ev.record
		out.Record = &rec
	}
	for aid := range ev.attempts {
		if a, ok := m.attempts[tenant][aid]; ok {
			out.Attempts = append(out.Attempts, a)
		}
	}
	for d := range ev.dead {
		out.DeadLetters = append(out.DeadLetters, d)
	}
	return out, nil
}
