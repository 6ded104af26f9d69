package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
)

// exitError carries a specific exit code (for example 2 for unusable input
// to the gate) through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// interrupted is the cause of a context that a signal cancelled.
type interrupted struct{ sig syscall.Signal }

func (i interrupted) Error() string { return i.sig.String() + " signal received" }

// Is makes an interruption a cancellation for errors.Is, as
// signal.NotifyContext's cause is.
func (i interrupted) Is(target error) bool { return target == context.Canceled }

// signalContext is cancelled by SIGINT or SIGTERM with an interrupted
// cause; stop releases the signals and waits for the watcher.
func signalContext() (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case s := <-ch:
			cancel(interrupted{sig: s.(syscall.Signal)})
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		cancel(nil)
		<-done
	}
}

// exitCode is 0 without an error; 128+N when signal N stopped a command
// that then failed (130 for Ctrl-C), as shells report it, so that a script
// can tell an interrupted run, whose results are written and marked
// incomplete, from a failed one; the code of an exitError; else 1.
func exitCode(ctx context.Context, err error) int {
	if err == nil {
		return 0
	}
	var in interrupted
	if errors.As(context.Cause(ctx), &in) {
		return 128 + int(in.sig)
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// globals are the flags every subcommand shares.
type globals struct {
	logLevel  string
	logFormat string
}

// logger builds the process's one logger and bridges klog (client-go) to it.
func (g *globals) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch strings.ToLower(g.logFormat) {
	case "text":
		h = slog.NewTextHandler(os.Stderr, opts)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, opts)
	default:
		return nil, fmt.Errorf("--log-format: want text or json, got %q", g.logFormat)
	}
	log := slog.New(h)
	klog.SetSlogLogger(log.With("source", "klog"))
	return log, nil
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "stampede",
		Short: "Measure what churn costs Kubernetes network control planes",
		Long: `Stampede reproduces and measures how Kubernetes network control planes
(Cilium's CRD mode, CiliumEndpointSlices, an etcd kvstore, operator-managed
identities and a central xDS control plane) behave under churn at scale.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(
		newScenariosCmd(g),
		newFakeapiCmd(g),
		newEtcdCmd(g),
		newRunCmd(g),
		newReportCmd(g),
		newGateCmd(g),
		newCapacityCmd(g),
		newControlplaneCmd(g),
		newMeshCmd(g),
		newAgentsCmd(g),
		newCalibrateCmd(g),
	)
	return root
}
