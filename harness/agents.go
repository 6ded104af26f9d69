package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/stampede-sim/stampede/internal/agentcontract"
)

// shardAgents polls the /agents endpoint of every agent shard.
type shardAgents struct {
	client *http.Client
	urls   []string // http://host:port of each shard's metrics endpoint
}

func (s *shardAgents) Agents(ctx context.Context) ([]AgentStatus, error) {
	type res struct {
		list []AgentStatus
		err  error
	}
	out := make([]res, len(s.urls))
	var wg sync.WaitGroup
	for i, u := range s.urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].list, out[i].err = s.poll(ctx, u)
		}()
	}
	wg.Wait()
	var all []AgentStatus
	for _, r := range out {
		if r.err != nil {
			return nil, r.err
		}
		all = append(all, r.list...)
	}
	return all, nil
}

func (s *shardAgents) poll(ctx context.Context, base string) ([]AgentStatus, error) {
	u := strings.TrimSuffix(base, "/") + agentcontract.StatusPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("poll %s: %w", u, err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("poll %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("poll %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("poll %s: HTTP %d: %s", u, resp.StatusCode, strings.TrimSpace(string(body[:min(len(body), 200)])))
	}
	reports, err := agentcontract.DecodeStatuses(body)
	if err != nil {
		return nil, fmt.Errorf("poll %s: %w", u, err)
	}
	out := make([]AgentStatus, 0, len(reports))
	for _, r := range reports {
		out = append(out, AgentStatus{Node: r.Node, IPCache: r.IPCacheDigest, Policy: r.PolicyDigest, LastChange: r.LastChange, Work: r.Work})
	}
	return out, nil
}
