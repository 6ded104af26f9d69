package harness

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one scrape of a /metrics endpoint, by family name.
type Metrics map[string]*dto.MetricFamily

// Scrape fetches and parses the Prometheus text exposition at url.
func Scrape(ctx context.Context, c *http.Client, url, token string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("scrape %s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return ParseMetrics(resp.Body)
}

// ParseMetrics parses the Prometheus text format.
func ParseMetrics(r io.Reader) (Metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return Metrics(fams), nil
}

func labelsMatch(m *dto.Metric, match map[string]string) bool {
	for k, v := range match {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k {
				found = lp.GetValue() == v
				break
			}
		}
		if !found && v != "" {
			return false
		}
	}
	return true
}

func labelValue(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

func scalar(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Summary != nil:
		return float64(m.Summary.GetSampleCount())
	}
	return 0
}

// Sum adds the values of every sample of family name whose labels match
// (a histogram counts its observations). ok is false if the family is
// absent.
func (ms Metrics) Sum(name string, match map[string]string) (float64, bool) {
	f, ok := ms[name]
	if !ok {
		return 0, false
	}
	var s float64
	for _, m := range f.GetMetric() {
		if labelsMatch(m, match) {
			s += scalar(m)
		}
	}
	return s, true
}

// SumBy is Sum split by the values of the labels in by, joined with " ".
func (ms Metrics) SumBy(name string, match map[string]string, by ...string) map[string]float64 {
	f, ok := ms[name]
	if !ok {
		return nil
	}
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		if !labelsMatch(m, match) {
			continue
		}
		var parts []string
		for _, b := range by {
			parts = append(parts, labelValue(m, b))
		}
		out[strings.Join(parts, " ")] += scalar(m)
	}
	return out
}

// HistogramSum is the observations' sum of histogram family name (for
// example total seconds), over matching series.
func (ms Metrics) HistogramSum(name string, match map[string]string) (float64, bool) {
	f, ok := ms[name]
	if !ok {
		return 0, false
	}
	var s float64
	for _, m := range f.GetMetric() {
		if m.Histogram != nil && labelsMatch(m, match) {
			s += m.Histogram.GetSampleSum()
		}
	}
	return s, true
}

// Histogram is a cumulative histogram: counts of observations <= each upper
// bound, in increasing bound order (the +Inf bucket is Count).
type Histogram struct {
	Bounds []float64
	Counts []float64
	Count  float64
	Sum    float64
}

// Histograms merges the histograms of family name, split by the labels in
// by (joined with " "); series with different bucket layouts are merged
// on the union of bounds as far as they agree.
func (ms Metrics) Histograms(name string, match map[string]string, by ...string) map[string]*Histogram {
	f, ok := ms[name]
	if !ok {
		return nil
	}
	out := map[string]*Histogram{}
	for _, m := range f.GetMetric() {
		h := m.GetHistogram()
		if h == nil || !labelsMatch(m, match) {
			continue
		}
		var parts []string
		for _, b := range by {
			parts = append(parts, labelValue(m, b))
		}
		key := strings.Join(parts, " ")
		acc := out[key]
		if acc == nil {
			acc = &Histogram{}
			for _, b := range h.GetBucket() {
				if math.IsInf(b.GetUpperBound(), 1) {
					continue
				}
				acc.Bounds = append(acc.Bounds, b.GetUpperBound())
			}
			acc.Counts = make([]float64, len(acc.Bounds))
			out[key] = acc
		}
		acc.add(h)
	}
	return out
}

func (h *Histogram) add(src *dto.Histogram) {
	h.Count += float64(src.GetSampleCount())
	h.Sum += src.GetSampleSum()
	for _, b := range src.GetBucket() {
		i := sort.SearchFloat64s(h.Bounds, b.GetUpperBound())
		if i < len(h.Bounds) && h.Bounds[i] == b.GetUpperBound() {
			h.Counts[i] += float64(b.GetCumulativeCount())
		}
	}
}

// Sub returns h minus an earlier scrape of the same histogram (nil prev
// means from zero). A counter reset (h below prev) yields h itself.
func (h *Histogram) Sub(prev *Histogram) *Histogram {
	if prev == nil || len(prev.Bounds) != len(h.Bounds) || prev.Count > h.Count {
		return h
	}
	d := &Histogram{Bounds: h.Bounds, Counts: make([]float64, len(h.Counts)), Count: h.Count - prev.Count, Sum: h.Sum - prev.Sum}
	for i := range h.Counts {
		d.Counts[i] = h.Counts[i] - prev.Counts[i]
	}
	return d
}

// Merge adds o (same layout) into h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil {
		return
	}
	if len(h.Bounds) == 0 && h.Count == 0 {
		h.Bounds = o.Bounds
		h.Counts = make([]float64, len(o.Counts))
	}
	if len(o.Bounds) != len(h.Bounds) {
		return
	}
	h.Count += o.Count
	h.Sum += o.Sum
	for i := range o.Counts {
		h.Counts[i] += o.Counts[i]
	}
}

// Quantile estimates the q-quantile by linear interpolation within the
// bucket, as PromQL's histogram_quantile does. It is NaN without
// observations; observations above the last bound report the last bound.
func (h *Histogram) Quantile(q float64) float64 {
	if h == nil || h.Count <= 0 {
		return math.NaN()
	}
	rank := q * h.Count
	lower, prevCount := 0.0, 0.0
	for i, ub := range h.Bounds {
		c := h.Counts[i]
		if c >= rank {
			if c == prevCount {
				return ub
			}
			return lower + (ub-lower)*(rank-prevCount)/(c-prevCount)
		}
		lower, prevCount = ub, c
	}
	if len(h.Bounds) == 0 {
		return math.NaN()
	}
	return h.Bounds[len(h.Bounds)-1]
}
