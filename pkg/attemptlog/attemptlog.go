// Package attemptlog writes attempt records to the ATTEMPTS stream and
// reads them back.
//
// A sender makes thousands of attempts a second at a busy endpoint, and one
// message per record cost the stream a stored message, and the history
// projection a delivery and an ack, for each of them. A Log gathers the
// records of one endpoint that end within a few milliseconds of each other
// into one message (a heraldv1.AttemptBatch, marked by the header
// Herald-Encoding: attempts), so a busy endpoint costs one message per
// batch. A record alone is stored as it always was, a bare heraldv1.Attempt,
// and Decode reads both.
//
// Whoever acks a job after recording its attempt passes the ack to Record:
// the Log runs it once the batch holding the record was handed to NATS, on
// the same connection, so the record still reaches the server before the
// ack does, as when each record was published at once.
package attemptlog

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/pkg/bus"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// EncodingBatch is the Herald-Encoding of a message holding an
// AttemptBatch.
const EncodingBatch = "attempts"

// Defaults of a Log's batches.
const (
	// DefaultLinger is how long a record waits for others of its endpoint:
	// long enough that a busy endpoint's records share messages, short
	// enough that history and herald tail show an attempt at once.
	DefaultLinger = 5 * time.Millisecond
	// DefaultRecords bounds the records of one message.
	DefaultRecords = 128
	// DefaultBytes bounds the encoded records of one message, far below
	// NATS's default 1 MiB payload limit (a record holds at most 1 KiB of
	// response body, plus its headers).
	DefaultBytes = 256 << 10
)

// Publisher is what a Log publishes with: a *nats.Conn. Records are plain
// publishes that ATTEMPTS stores, without JetStream's ack: nobody waits
// for it, and the acks of the jobs that follow them on the same connection
// arrive after them.
type Publisher interface {
	PublishMsg(m *nats.Msg) error
}

// Log gathers attempt records by endpoint and publishes them in batches.
// It is safe for concurrent use.
type Log struct {
	pub    Publisher
	log    zerolog.Logger
	linger time.Duration
	most   int
	bytes  int

	mu      sync.Mutex
	pending map[string]*batch // by subject
	armed   bool              // a flush of everything pending is due
	// publishing counts batches taken out of pending and not yet
	// published (their then functions not yet run); done is signalled when
	// it drops to 0, for Flush.
	publishing int
	done       *sync.Cond
}

type batch struct {
	recs  []*heraldv1.Attempt
	size  int
	after []func()
}

// Option configures a Log.
type Option func(*Log)

// WithLinger sets how long a record waits for others of its endpoint
// before it is published; 0 publishes every record at once.
func WithLinger(d time.Duration) Option { return func(l *Log) { l.linger = max(d, 0) } }

// WithLimits bounds one message's records, in number and encoded bytes.
func WithLimits(records, bytes int) Option {
	return func(l *Log) { l.most, l.bytes = max(records, 1), max(bytes, 1) }
}

// WithLogger sets the logger for records that could not be published.
func WithLogger(lg zerolog.Logger) Option { return func(l *Log) { l.log = lg } }

// New returns a Log publishing with pub.
func New(pub Publisher, opts ...Option) *Log {
	l := &Log{pub: pub, log: zerolog.Nop(), linger: DefaultLinger, most: DefaultRecords, bytes: DefaultBytes,
		pending: map[string]*batch{}}
	l.done = sync.NewCond(&l.mu)
	for _, o := range opts {
		o(l)
	}
	return l
}

// Record adds rec to its endpoint's batch. then, if not nil, runs once the
// batch was published (or failed to be: a record is never worth more than
// the job it describes), on the goroutine that published it; it must not
// block.
func (l *Log) Record(rec *heraldv1.Attempt, then func()) {
	subject := bus.AttemptSubject(rec.TenantId, rec.EndpointId)
	size := proto.Size(rec)
	l.mu.Lock()
	b := l.pending[subject]
	if b != nil && (len(b.recs) >= l.most || b.size+size > l.bytes) {
		l.take(subject)
		l.mu.Unlock()
		l.publish(subject, b) // full: it goes now, rec starts the next
		l.mu.Lock()
		b = l.pending[subject]
	}
	if b == nil {
		b = &batch{}
		l.pending[subject] = b
	}
	b.recs = append(b.recs, rec)
	b.size += size
	if then != nil {
		b.after = append(b.after, then)
	}
	if l.linger == 0 {
		l.take(subject)
		l.mu.Unlock()
		l.publish(subject, b)
		return
	}
	if !l.armed {
		l.armed = true
		time.AfterFunc(l.linger, l.flushDue)
	}
	l.mu.Unlock()
}

// RecordNow publishes rec with whatever its endpoint's batch holds, before
// it returns: for a record whose job's next step is not a plain ack (a
// retry's schedule, a dead letter), which must not wait for a linger.
func (l *Log) RecordNow(rec *heraldv1.Attempt) {
	subject := bus.AttemptSubject(rec.TenantId, rec.EndpointId)
	l.mu.Lock()
	b := l.pending[subject]
	if b == nil {
		b = &batch{}
	}
	l.take(subject)
	l.mu.Unlock()
	b.recs = append(b.recs, rec)
	l.publish(subject, b)
}

// take removes subject's batch from pending, for its publisher; l.mu is
// held.
func (l *Log) take(subject string) {
	delete(l.pending, subject)
	l.publishing++
}

// flushDue publishes everything pending when the linger of the first of it
// ran out.
func (l *Log) flushDue() {
	l.mu.Lock()
	l.armed = false
	l.mu.Unlock()
	l.Flush()
}

// Flush publishes every pending batch now, runs their then functions, and
// returns once the batches other goroutines were publishing are out too.
// A sender calls it when it stops, after its last job: every ack then has
// been sent.
func (l *Log) Flush() {
	l.mu.Lock()
	var due map[string]*batch
	if len(l.pending) > 0 {
		due = l.pending // this goroutine's alone from now on
		l.pending = make(map[string]*batch, len(due))
		l.publishing += len(due)
	}
	l.mu.Unlock()
	for subject, b := range due {
		l.publish(subject, b)
	}
	l.mu.Lock()
	for l.publishing > 0 {
		l.done.Wait()
	}
	l.mu.Unlock()
}

func (l *Log) publish(subject string, b *batch) {
	m := &nats.Msg{Subject: subject}
	var err error
	if len(b.recs) == 1 {
		m.Data, err = proto.Marshal(b.recs[0])
	} else {
		m.Header = nats.Header{bus.HeaderEncoding: []string{EncodingBatch}}
		m.Data, err = proto.Marshal(&heraldv1.AttemptBatch{Attempts: b.recs})
	}
	if err == nil && l.pub == nil {
		err = errors.New("no NATS connection")
	}
	if err == nil {
		err = l.pub.PublishMsg(m)
	}
	if err != nil {
		l.log.Debug().Err(err).Int("records", len(b.recs)).Msg("attempt records not stored")
	}
	for _, f := range b.after {
		f()
	}
	l.mu.Lock()
	if l.publishing--; l.publishing == 0 {
		l.done.Broadcast()
	}
	l.mu.Unlock()
}

// Decode reads the attempt records of one ATTEMPTS message: a batch, or a
// lone record.
func Decode(h nats.Header, data []byte) ([]*heraldv1.Attempt, error) {
	if h.Get(bus.HeaderEncoding) == EncodingBatch {
		b := &heraldv1.AttemptBatch{}
		if err := proto.Unmarshal(data, b); err != nil {
			return nil, fmt.Errorf("decode attempt batch: %w", err)
		}
		return b.Attempts, nil
	}
	a := &heraldv1.Attempt{}
	if err := proto.Unmarshal(data, a); err != nil {
		return nil, fmt.Errorf("decode attempt: %w", err)
	}
	return []*heraldv1.Attempt{a}, nil
}
