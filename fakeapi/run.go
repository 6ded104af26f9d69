package fakeapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/stampede-sim/stampede/internal/ready"
)

// RunOptions are the process-level outputs of Run.
type RunOptions struct {
	// KubeconfigOut, if set, receives an admin kubeconfig.
	KubeconfigOut string
	// ReadyFile, if set, receives the ready.Announcement.
	ReadyFile string
	// Stdout receives the announcement as one JSON line.
	Stdout io.Writer
}

// Run serves cfg until ctx ends (the `stampede fakeapi` subcommand). Once
// serving it announces endpoints "api" (the API URL) and "metrics" (the
// same server's /metrics URL) with extra "ca" (the certificate file, TLS
// only) and "token" (the admin bearer token).
func Run(ctx context.Context, cfg Config, opts RunOptions) (err error) {
	if !cfg.PlainHTTP && cfg.CertDir == "" {
		dir, err := os.MkdirTemp("", "stampede-fakeapi-")
		if err != nil {
			return fmt.Errorf("cert dir: %w", err)
		}
		defer func() { _ = os.RemoveAll(dir) }()
		cfg.CertDir = dir
	}
	s, err := New(cfg)
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.Close()) }()
	if opts.KubeconfigOut != "" {
		if err := s.WriteKubeconfig(opts.KubeconfigOut); err != nil {
			return err
		}
	}
	a := ready.Announcement{
		Component: "fakeapi",
		Endpoints: map[string]string{"api": s.URL(), "metrics": s.URL() + "/metrics"},
		Extra:     map[string]string{"token": s.AdminToken()},
	}
	if s.CAFile() != "" {
		a.Extra["ca"] = s.CAFile()
	}
	if opts.KubeconfigOut != "" {
		a.Extra["kubeconfig"] = opts.KubeconfigOut
	}
	if err := ready.Announce(opts.ReadyFile, opts.Stdout, a); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}
