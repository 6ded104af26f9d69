package calibrate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stampede-sim/stampede/harness"
	"github.com/stampede-sim/stampede/internal/capacity"
	"github.com/stampede-sim/stampede/scenarios"
)

// ModelledCPUMetric is the counter of CPU-seconds the fake API server's
// capacity model charged, which validation compares with what the
// confined kube-apiserver and etcd spent.
const ModelledCPUMetric = capacity.ModelledCPUMetric

// apiCPU is the API server CPU-seconds of one mode's backend, from its
// Start to its Stop, with how it was obtained.
type apiCPU struct {
	Seconds float64
	// Source says "measured" (/proc of kube-apiserver and etcd) or
	// "modelled" (the fake's ModelledCPUMetric); Err why it is missing.
	Source string
	Err    error
}

// confinedBackend runs harness.LocalBackend with kube-apiserver and etcd
// confined to a number of cores (the harness's agents, control plane and
// probe stay outside) and measures their CPU from Start to Stop.
type confinedBackend struct {
	*harness.LocalBackend
	cores float64
	name  string

	mu     sync.Mutex
	conf   *Confinement
	mode   scenarios.Mode
	meter  *cpuMeter
	start  float64
	method string
	cpu    map[scenarios.Mode]apiCPU
}

func (b *confinedBackend) Start(ctx context.Context, env harness.BackendEnv) (*harness.APIServer, error) {
	api, err := b.LocalBackend.Start(ctx, env)
	if err != nil {
		return nil, err
	}
	pids := []int{api.Processes["apiserver"], api.Processes["etcd"]}
	conf, err := Confine(fmt.Sprintf("%s-%s", b.name, env.Mode), b.cores, pids)
	if err != nil {
		_ = b.LocalBackend.Stop(context.WithoutCancel(ctx))
		return nil, err
	}
	meter := &cpuMeter{pids: pids}
	c0, err := meter.read()
	if err != nil {
		_ = b.LocalBackend.Stop(context.WithoutCancel(ctx))
		_ = conf.Release()
		return nil, err
	}
	b.mu.Lock()
	b.conf, b.mode, b.meter, b.start, b.method = conf, env.Mode, meter, c0.Seconds(), conf.String()
	b.mu.Unlock()
	api.Facts["confinement"] = conf.String()
	return api, nil
}

func (b *confinedBackend) Stop(ctx context.Context) error {
	b.mu.Lock()
	if b.meter != nil {
		c1, err := b.meter.read()
		b.cpu[b.mode] = apiCPU{Seconds: c1.Seconds() - b.start, Source: "measured", Err: err}
		b.meter = nil
	}
	conf := b.conf
	b.conf = nil
	b.mu.Unlock()
	err := b.LocalBackend.Stop(ctx)
	return errors.Join(err, conf.Release())
}

// meteredFake runs harness.FakeBackend and reads the capacity model's
// charged CPU-seconds from its /metrics at Start and then every
// meterInterval until the mode ends: the fake process ends with the mode's
// context, before Stop is called, so Stop reports the last reading.
type meteredFake struct {
	*harness.FakeBackend

	mu    sync.Mutex
	mode  scenarios.Mode
	start float64
	last  apiCPU
	cpu   map[scenarios.Mode]apiCPU
	stop  chan struct{} // closed by Stop: the meter returns
	done  chan struct{} // closed when the meter of the current mode returns
}

// meterInterval is how often meteredFake reads the modelled CPU; the
// figure Stop reports misses at most this much of the run's end.
const meterInterval = time.Second

func (b *meteredFake) Start(ctx context.Context, env harness.BackendEnv) (*harness.APIServer, error) {
	api, err := b.FakeBackend.Start(ctx, env)
	if err != nil {
		return nil, err
	}
	token := ""
	for _, u := range env.Users {
		if u.Role == harness.RoleAdmin {
			token = u.Token
		}
	}
	c, err := newClient(api.MetricsURLs["apiserver"], api.CAFile, token, 1)
	if err != nil {
		_ = b.FakeBackend.Stop(context.WithoutCancel(ctx))
		return nil, err
	}
	// The meter is validation's own reading of the model's account, not
	// a scrape the local side has: the fake does not charge it.
	c.header = http.Header{capacity.MeterHeader: {"1"}}
	// A counter with labels has no series until the model first charges
	// something: absent at Start is zero.
	v, err := scrapeCounter(ctx, c, ModelledCPUMetric)
	if errors.Is(err, errNoMetric) {
		v, err = 0, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mode, b.start, b.last = env.Mode, v, apiCPU{Source: "modelled", Err: err}
	b.stop, b.done = make(chan struct{}), make(chan struct{})
	if err != nil {
		c.close()
		close(b.done)
		return api, nil
	}
	go b.meter(ctx, c, b.stop, b.done)
	return api, nil
}

// meter reads the modelled CPU every meterInterval until ctx ends or stop
// is closed.
func (b *meteredFake) meter(ctx context.Context, c *client, stop <-chan struct{}, done chan struct{}) {
	defer close(done)
	defer c.close()
	t := time.NewTicker(meterInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-t.C:
		}
		v, err := scrapeCounter(ctx, c, ModelledCPUMetric)
		if ctx.Err() != nil {
			return
		}
		b.mu.Lock()
		if errors.Is(err, errNoMetric) {
			v, err = b.start, nil
		}
		if err == nil {
			b.last = apiCPU{Seconds: v - b.start, Source: "modelled"}
		} else if b.last.Seconds == 0 {
			b.last.Err = err
		}
		b.mu.Unlock()
	}
}

func (b *meteredFake) Stop(ctx context.Context) error {
	b.mu.Lock()
	stop, done := b.stop, b.done
	b.stop = nil
	b.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	err := b.FakeBackend.Stop(ctx)
	b.mu.Lock()
	b.cpu[b.mode] = b.last
	b.done = nil
	b.mu.Unlock()
	return err
}

// errNoMetric is returned when the exposition has no series of the metric.
var errNoMetric = errors.New("the fake API server exports no")

// scrapeCounter sums every series of a counter in a Prometheus text
// exposition.
func scrapeCounter(ctx context.Context, c *client, metric string) (float64, error) {
	body, _, err := c.do(ctx, "GET", "", "", nil)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", metric, err)
	}
	return parseCounter(body, metric)
}

func parseCounter(body []byte, metric string) (float64, error) {
	var sum float64
	found := false
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if n, _, hasLabels := strings.Cut(name, "{"); hasLabels {
			name = n
			if i := strings.LastIndex(line, "} "); i >= 0 {
				rest = line[i+2:]
			}
		}
		if !ok || name != metric {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil || math.IsNaN(v) {
			return 0, fmt.Errorf("metric %s: bad value %q", metric, f[0])
		}
		sum += v
		found = true
	}
	if !found {
		return 0, fmt.Errorf("%w %s (is its capacity model on?)", errNoMetric, metric)
	}
	return sum, nil
}
