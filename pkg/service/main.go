package service

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Main is the body of every Herald binary: read the environment over def,
// run until SIGINT or SIGTERM, stop gracefully. It returns the exit code.
func Main(role string, def Config) int {
	cfg, err := FromEnv(def)
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald:", err)
		return 2
	}
	log := NewLogger(cfg, os.Stdout, role)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var ready func(Info)
	if cfg.Embedded {
		ready = func(i Info) { PrintWelcome(os.Stderr, i) }
	}
	if err := Run(ctx, cfg, log, ready); err != nil {
		log.Error().Err(err).Msg("herald stopped on an error")
		return 1
	}
	return 0
}
