package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/retry"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/rs/zerolog"
)

// inProcess deploys Herald inside the test process with service.Run: the
// all-in-one (embedded NATS, no Redis), or the separate roles (ingest,
// router, two senders, each its own service.Run) against a NATS server and
// a redis-server of their own. Same code paths as the binaries, minus the
// process boundary; processes are not measured.
type inProcess struct {
	t        *testing.T
	separate bool
}

func (d inProcess) Name() string {
	if d.separate {
		return "separate"
	}
	return "all-in-one"
}

func (d inProcess) Start(ctx context.Context, o DeployOptions) (*Stack, error) {
	t := d.t
	admin := randToken("adm_smoke")
	def := service.Config{
		HTTPAddr: "127.0.0.1:0", AdminToken: admin, MaxEventBytes: o.MaxEventBytes,
		SenderWorkers: 64, RouterWorkers: 16, AckWait: 10 * time.Second, LogLevel: "warn",
		EgressAllowPrivate: true, // the sinks listen on loopback
		EncryptionKey:      BenchEncryptionKey,
	}
	if o.RetrySchedule != "" {
		s, err := retry.Parse(o.RetrySchedule)
		if err != nil {
			return nil, err
		}
		def.Schedule = s
	}
	log := testenv.Logger(t).Level(zerolog.WarnLevel)
	var roles []service.Config
	if d.separate {
		redisURL := testenv.RedisProcess(t).URL()
		natsURL := testenv.NATSServer(t).URL()
		for _, r := range []service.Roles{{API: true}, {Router: true}, {Sender: true}, {Sender: true}} {
			c := def
			c.Roles, c.NATSURL, c.RedisURL, c.RedisPrefix = r, natsURL, redisURL, "smoke:"
			roles = append(roles, c)
		}
	} else {
		c := def
		c.Roles = service.Roles{API: true, Router: true, Sender: true}
		c.Embedded, c.RedisOptional = true, true
		c.DataDir = filepath.Join(o.Dir, "data")
		c.NATSListen = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
		c.RedisURL = "redis://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) // nobody: in-process cache
		roles = append(roles, c)
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	dones := make([]chan error, len(roles))
	var api, natsURL string
	stop := func() {
		cancel()
		for i, d := range dones {
			if d == nil {
				continue
			}
			select {
			case err := <-d:
				if err != nil {
					t.Errorf("role %d stopped with %v", i, err)
				}
			case <-time.After(45 * time.Second):
				t.Errorf("role %d did not stop within 45 s", i)
			}
		}
	}
	for i, def := range roles {
		cfg, err := service.FromEnv(def)
		if err != nil {
			stop()
			return nil, err
		}
		infoc := make(chan service.Info, 1)
		dones[i] = make(chan error, 1)
		go func() {
			dones[i] <- service.Run(rctx, cfg, log.With().Int("role", i).Logger(), func(in service.Info) { infoc <- in })
		}()
		select {
		case in := <-infoc:
			if def.Roles.API {
				api, natsURL = "http://"+in.HTTPAddr, in.NATSURL
			}
		case err := <-dones[i]:
			dones[i] <- err
			stop()
			return nil, fmt.Errorf("role %d: %w", i, errors.Join(err, errors.New("stopped before ready")))
		case <-time.After(30 * time.Second):
			stop()
			return nil, fmt.Errorf("role %d not ready in 30 s", i)
		}
	}
	st := NewStack(d.Name(), api, natsURL, admin, stop)
	if !d.separate { // the embedded server wants Herald's own credentials
		own, err := service.ReadEmbeddedNATSAuth(filepath.Join(o.Dir, "data"))
		if err != nil {
			stop()
			return nil, err
		}
		st.NATSOptions = own.Options()
	}
	return st, nil
}
