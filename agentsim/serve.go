package agentsim

import (
	"context"
	"io"
	"net/http"
	"strconv"

	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/internal/daemon"
)

// ServeConfig configures Serve: a shard process.
type ServeConfig struct {
	// Fleet configures the shard's agents; Registerer is set by Serve.
	Fleet Config
	// MetricsListen is the address of the metrics endpoint (default
	// 127.0.0.1:0).
	MetricsListen string
	// ReadyFile, if set, receives the ready announcement.
	ReadyFile string
	// Stdout receives the announcement line (nil: none).
	Stdout io.Writer
}

// Serve runs one shard until ctx ends: it builds the fleet, serves
// /metrics, /debug/pprof/ and GET /agents on MetricsListen, announces the
// endpoint "metrics" (extra: shard, agents, mode) and runs the agents. It
// returns once every agent and the server stopped.
func Serve(ctx context.Context, cfg ServeConfig) error {
	reg := daemon.NewRegistry()
	cfg.Fleet.Registerer = reg
	f, err := New(ctx, cfg.Fleet)
	if err != nil {
		return err
	}
	shards := max(cfg.Fleet.Shards, 1)
	// The agents close their datapaths when they stop; if Run fails before
	// it starts them, Serve closes them here.
	ran := false
	run := func(ctx context.Context) error {
		ran = true
		return f.Run(ctx)
	}
	err = daemon.Run(ctx, daemon.Config{
		Component:     "agents",
		MetricsListen: cfg.MetricsListen,
		Gatherer:      reg,
		Handlers:      map[string]http.Handler{"GET " + agentcontract.StatusPath: f.Handler()},
		Extra: map[string]string{
			"shard":  strconv.Itoa(cfg.Fleet.Shard) + "/" + strconv.Itoa(shards),
			"agents": strconv.Itoa(len(f.agents)),
			"mode":   string(cfg.Fleet.Mode),
		},
		ReadyFile: cfg.ReadyFile,
		Stdout:    cfg.Stdout,
	}, daemon.Part{Name: "agents", Run: run})
	if !ran {
		f.closeAll()
	}
	return err
}
