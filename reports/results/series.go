package results

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Series are a mode's time series in columnar form: one shared time axis and
// one column of values per named series. A sample the harness did not take
// (a process not yet started, a scrape that failed) is NaN in Go and null in
// JSON.
type Series struct {
	// Start is the time of offset 0 (the mode's start).
	Start time.Time `json:"start"`
	// IntervalSeconds is the nominal sampling interval (1).
	IntervalSeconds float64 `json:"intervalSeconds"`
	// T holds each sample's offset from Start, seconds, ascending.
	T []float64 `json:"t"`
	// Values maps a series name (see SeriesName) to its column; every
	// column has len(T) entries.
	Values map[string]Column `json:"values"`
}

// Column is one series' values; NaN means no sample (null in JSON).
type Column []float64

// MarshalJSON writes NaN and infinities as null.
func (c Column) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, v := range c {
		if i > 0 {
			b.WriteByte(',')
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			b.WriteString("null")
			continue
		}
		b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// UnmarshalJSON reads null as NaN.
func (c *Column) UnmarshalJSON(data []byte) error {
	var raw []*float64
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	out := make(Column, len(raw))
	for i, p := range raw {
		if p == nil {
			out[i] = math.NaN()
		} else {
			out[i] = *p
		}
	}
	*c = out
	return nil
}

// NewSeries starts empty series at start with a sampling interval.
func NewSeries(start time.Time, interval time.Duration) *Series {
	return &Series{Start: start, IntervalSeconds: interval.Seconds(), Values: map[string]Column{}}
}

// Append adds one sample row taken at t. Series absent from values get NaN
// in this row; series seen for the first time get NaN in earlier rows.
func (s *Series) Append(t time.Time, values map[string]float64) {
	if s.Values == nil {
		s.Values = map[string]Column{}
	}
	n := len(s.T)
	s.T = append(s.T, t.Sub(s.Start).Seconds())
	for name, col := range s.Values {
		v, ok := values[name]
		if !ok {
			v = math.NaN()
		}
		s.Values[name] = append(col, v)
	}
	for name, v := range values {
		if _, ok := s.Values[name]; ok {
			continue
		}
		col := make(Column, n, n+1)
		for i := range col {
			col[i] = math.NaN()
		}
		s.Values[name] = append(col, v)
	}
}

// AppendSample adds one sample row to the mode's series, creating them
// (starting at the mode's start, or t) on first use.
func (m *ModeResult) AppendSample(t time.Time, values map[string]float64) {
	if m.Series == nil {
		start := t
		if m.Started != nil {
			start = *m.Started
		}
		m.Series = NewSeries(start, time.Second)
	}
	m.Series.Append(t, values)
}

// Names lists the series names, sorted.
func (s *Series) Names() []string {
	if s == nil {
		return nil
	}
	names := make([]string, 0, len(s.Values))
	for n := range s.Values {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Len is the number of samples.
func (s *Series) Len() int {
	if s == nil {
		return 0
	}
	return len(s.T)
}

// Label is one name=value pair of a series name.
type Label struct {
	Name, Value string
}

// SeriesName builds a series name from a base and label pairs given as
// name, value, name, value ...: SeriesName("cpu", "process", "apiserver")
// is "cpu{process=apiserver}". Labels are written in the order given.
func SeriesName(base string, labelPairs ...string) string {
	if len(labelPairs) < 2 {
		return base
	}
	var b strings.Builder
	b.WriteString(base)
	b.WriteByte('{')
	for i := 0; i+1 < len(labelPairs); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(labelPairs[i])
		b.WriteByte('=')
		b.WriteString(labelPairs[i+1])
	}
	b.WriteByte('}')
	return b.String()
}

// ParseSeriesName splits "base{a=b,c=d}" into its base and labels.
func ParseSeriesName(name string) (string, []Label, error) {
	i := strings.IndexByte(name, '{')
	if i < 0 {
		if strings.ContainsAny(name, "}=,") {
			return "", nil, fmt.Errorf("series name %q: unexpected character outside braces", name)
		}
		return name, nil, nil
	}
	if !strings.HasSuffix(name, "}") {
		return "", nil, fmt.Errorf("series name %q: missing closing brace", name)
	}
	base := name[:i]
	if base == "" {
		return "", nil, fmt.Errorf("series name %q: empty base name", name)
	}
	inner := name[i+1 : len(name)-1]
	if inner == "" {
		return base, nil, nil
	}
	var labels []Label
	for _, kv := range strings.Split(inner, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return "", nil, fmt.Errorf("series name %q: label %q is not name=value", name, kv)
		}
		labels = append(labels, Label{k, v})
	}
	return base, labels, nil
}

// LabelValue returns the value of label key in a series name ("" if absent).
func LabelValue(name, key string) string {
	_, labels, err := ParseSeriesName(name)
	if err != nil {
		return ""
	}
	for _, l := range labels {
		if l.Name == key {
			return l.Value
		}
	}
	return ""
}

// Well-known series names. SCHEMA.md lists them with their units. Labelled
// series add {label=value,...} to the base name.
const (
	// Probe latency over all probe requests in the second, seconds.
	SeriesAPILatencyP50 = "apiserver.latency.p50"
	SeriesAPILatencyP99 = "apiserver.latency.p99"
	SeriesAPILatencyMax = "apiserver.latency.max"
	// The same by {verb=...,resource=...}.
	// Server-side latency from apiserver_request_duration_seconds, by
	// {verb,resource} or unlabelled for all.
	SeriesServerLatencyP99 = "apiserver.server.latency.p99"
	// Probe request rate achieved, requests/s.
	SeriesProbeRate = "probe.rate"
	// CPU in cores and resident memory in bytes, by {process=...}.
	SeriesCPU = "cpu"
	SeriesRSS = "rss"
	// Per-agent CPU (cores) and RSS (bytes) across shards.
	SeriesAgentsCPUMean = "agents.cpu.mean"
	SeriesAgentsCPUMin  = "agents.cpu.min"
	SeriesAgentsCPUMax  = "agents.cpu.max"
	SeriesAgentsRSSMean = "agents.rss.mean"
	SeriesAgentsRSSMin  = "agents.rss.min"
	SeriesAgentsRSSMax  = "agents.rss.max"
	// The machine's MemTotal - MemAvailable, bytes.
	SeriesMachineMemoryUsed = "memory.machine.used"
	// Agents converged so far (count).
	SeriesAgentsConverged = "agents.converged"
	// Watch events/s and bytes/s delivered, optionally by {resource=...}.
	SeriesWatchEventsRate = "watch.events.rate"
	SeriesWatchBytesRate  = "watch.bytes.rate"
	// Watch events/s and bytes/s the API server says it sent.
	SeriesAPIServerWatchEventsRate = "apiserver.watch.events.rate"
	SeriesAPIServerWatchBytesRate  = "apiserver.watch.bytes.rate"
	// The API server's open watches (apiserver_longrunning_requests with
	// verb WATCH summed over resources), count.
	SeriesAPIServerWatchConnections = "apiserver.watch.connections"
	// CPU (cores) the fake's capacity model charged per second: what a
	// kube-apiserver with its etcd would have spent (apiServer.model
	// "capacity" only).
	SeriesAPIServerModelledCPU = "apiserver.modelled.cpu"
	// kvstore latency by {op=get|put|...}, seconds.
	SeriesKVStoreLatencyP50 = "kvstore.latency.p50"
	SeriesKVStoreLatencyP99 = "kvstore.latency.p99"
	// The harness's own kvstore probe by {op=...}, seconds.
	SeriesKVStoreProbeLatencyP50 = "kvstore.probe.latency.p50"
	SeriesKVStoreProbeLatencyP99 = "kvstore.probe.latency.p99"
	// The kvstore's WAL fsync p99 over the interval, seconds.
	SeriesKVStoreFsyncP99 = "kvstore.fsync.p99"
	// xDS push latency, seconds.
	SeriesXDSPushLatencyP50 = "xds.push.latency.p50"
	SeriesXDSPushLatencyP99 = "xds.push.latency.p99"
	// API writes/s by {type="<verb> <resource>"}.
	SeriesAPIWritesRate = "api.writes.rate"
	// 429 responses/s and client-throttled requests/s.
	SeriesAPI429Rate         = "api.429.rate"
	SeriesClientThrottleRate = "client.throttled.rate"
	// Identities that exist (count) and created/s.
	SeriesIdentities       = "identities.count"
	SeriesIdentitiesCreate = "identities.created.rate"
	// Datapath updates/s across agents.
	SeriesDatapathUpdatesRate = "datapath.updates.rate"
)
