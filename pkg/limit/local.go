package limit

import (
	"time"
)

// localEP is one endpoint's limits in this process (degraded mode, or no
// Redis at all): the same rules as the scripts, in memory.
type localEP struct {
	leases     map[string]time.Time // lease id -> expiry
	tat        time.Time            // GCRA theoretical arrival time
	fails      int
	failSince  time.Time // first failure of the current run
	opens      int
	openUntil  time.Time // zero while closed
	probe      string
	probeUntil time.Time
}

// sweepEvery is how often idle local entries are dropped.
const sweepEvery = time.Minute

func (l *Limiter) admitLocal(now time.Time, endpoint string, rate int, ttl time.Duration, lease string, outsideBreaker bool) Verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	e := l.local[endpoint]
	if e == nil {
		e = &localEP{leases: map[string]time.Time{}}
		l.local[endpoint] = e
	}
	probe := false
	if !e.openUntil.IsZero() && !outsideBreaker {
		if now.Before(e.openUntil) {
			return Verdict{Cause: Breaker, RetryIn: e.openUntil.Sub(now)}
		}
		if e.probe != "" && now.Before(e.probeUntil) {
			return Verdict{Cause: Breaker, RetryIn: min(e.probeUntil.Sub(now), l.coolDown)}
		}
		probe = true
	}
	var newTAT time.Time
	if rate > 0 {
		t := time.Second / time.Duration(rate)
		tat := e.tat
		if tat.Before(now) {
			tat = now
		}
		newTAT = tat.Add(t)
		if allowAt := newTAT.Add(-time.Duration(burst(rate)) * t); allowAt.After(now) {
			return Verdict{Cause: Rate, RetryIn: max(allowAt.Sub(now), time.Microsecond)}
		}
	}
	if l.capacity > 0 {
		var first time.Time
		for id, exp := range e.leases {
			if !exp.After(now) {
				delete(e.leases, id)
			} else if first.IsZero() || exp.Before(first) {
				first = exp
			}
		}
		if len(e.leases) >= l.capacity {
			return Verdict{Cause: Concurrency, RetryIn: max(min(first.Sub(now), maxConcurrencyWait), time.Millisecond)}
		}
		e.leases[lease] = now.Add(ttl)
	}
	if rate > 0 {
		e.tat = newTAT
	}
	if probe {
		e.probe, e.probeUntil = lease, now.Add(ttl)
	}
	return Verdict{Allowed: true, Probe: probe}
}

// releaseLocal frees a local lease and records nothing.
func (l *Limiter) releaseLocal(endpoint, lease string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.local[endpoint]; e != nil {
		delete(e.leases, lease)
	}
}

// recordLocal releases a local lease (if any) and records an outcome in the
// local breaker, with the rules of recordScript.
func (l *Limiter) recordLocal(now time.Time, endpoint, lease string, probe, success bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.local[endpoint]
	if e == nil {
		if success || l.failures <= 0 {
			return
		}
		e = &localEP{leases: map[string]time.Time{}}
		l.local[endpoint] = e
	}
	delete(e.leases, lease)
	if l.failures <= 0 {
		return
	}
	if probe && e.probe == lease {
		e.probe, e.probeUntil = "", time.Time{}
	}
	if !e.openUntil.IsZero() {
		if !probe || now.Before(e.openUntil) {
			return
		}
		if success {
			e.openUntil, e.opens, e.fails = time.Time{}, 0, 0
			transitions.WithLabelValues(StateClosed).Inc()
			track(l, endpoint, breakerState{})
			return
		}
		e.opens = min(e.opens+1, 64)
		e.openUntil = now.Add(l.coolDownAfter(e.opens))
		transitions.WithLabelValues(StateOpen).Inc()
		track(l, endpoint, breakerState{open: true, openUntil: e.openUntil.UnixMilli()})
		return
	}
	if success {
		e.fails = 0
		return
	}
	e.fails++
	if e.fails == 1 {
		e.failSince = now
	}
	if e.fails >= l.failures && now.Sub(e.failSince) >= l.failingFor {
		e.fails, e.opens = 0, 1
		e.openUntil = now.Add(l.coolDown)
		transitions.WithLabelValues(StateOpen).Inc()
		track(l, endpoint, breakerState{open: true, openUntil: e.openUntil.UnixMilli()})
	}
}

// sweep drops idle entries (nothing in flight, no rate debt, breaker closed
// without failures) at most once per sweepEvery. Called with l.mu held.
func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < sweepEvery {
		return
	}
	l.lastSweep = now
	for ep, e := range l.local {
		for id, exp := range e.leases {
			if !exp.After(now) {
				delete(e.leases, id)
			}
		}
		if len(e.leases) == 0 && !e.tat.After(now) && e.openUntil.IsZero() && e.fails == 0 {
			delete(l.local, ep)
		}
	}
}
