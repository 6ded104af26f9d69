package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/stampede-sim/stampede/controlplane/mesh"
	"github.com/stampede-sim/stampede/internal/access"
	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/scenarios"
)

// meshSyncTimeout bounds the wait for a replica's first synchronization.
const meshSyncTimeout = 5 * time.Minute

// meshSource is the endpoint source of the mirrors for endpoints e: the
// clustermesh-apiserver mirrors CiliumEndpointSlices when CES is on (ces,
// ces-slim) and CiliumEndpoints otherwise
// (clustermesh-apiserver/clustermesh/converters.go).
func meshSource(e scenarios.EndpointDistribution) (mesh.Source, error) {
	switch e {
	case scenarios.EndpointsCES, scenarios.EndpointsCESSlim:
		return mesh.SourceCES, nil
	case scenarios.EndpointsCEP:
		return mesh.SourceCEP, nil
	}
	return "", fmt.Errorf("the mesh mirror carries no %q endpoints (want cep, ces or ces-slim)", e)
}

// meshDataParent makes the directory a replica's etcd keeps its ephemeral
// data under: a fresh temporary directory on disk, or under /dev/shm for
// storageMedium memory, as Helm clustermesh.apiserver.etcd.storageMedium
// puts the sidecar's emptyDir on disk or in memory. The caller removes it.
func meshDataParent(medium string, i int) (string, error) {
	base := ""
	if medium == scenarios.StorageMemory {
		base = "/dev/shm"
	}
	d, err := os.MkdirTemp(base, fmt.Sprintf("stampede-mesh-etcd-%d-", i))
	if err != nil {
		return "", fmt.Errorf("mesh replica %d: etcd data directory (storageMedium %s): %w", i, medium, err)
	}
	return d, nil
}

// startMesh starts the ClusterMesh etcd mirrors in modes with the mesh
// read path (CFP-44774): controlPlane.mesh.replicas pairs, each a
// `stampede etcd` (its own cluster token, so its own cluster ID, and
// ephemeral data) and a `stampede mesh` that fills it from the API server
// as the clustermesh-apiserver's user. It waits until every replica wrote
// its sync canaries, and measures each process (mesh-etcd-<i>, mesh-<i>).
func (mr *modeRun) startMesh(ctx context.Context) error {
	if !mr.axes.HasMesh() {
		return nil
	}
	s := mr.r.cfg.Scenario
	knobs := s.ControlPlane.Mesh
	mr.pr.set(fmt.Sprintf("start %d mesh replicas", knobs.Replicas), -1)
	source, err := meshSource(mr.axes.Endpoints)
	if err != nil {
		return failed(fmt.Errorf("mode %s: %w", mr.mode, err))
	}
	tokenFile := filepath.Join(mr.dir, "mesh.token")
	if err := os.WriteFile(tokenFile, []byte(mr.meshUser.Token+"\n"), 0o600); err != nil {
		return failed(fmt.Errorf("write mesh token: %w", err))
	}
	for i := range knobs.Replicas {
		parent, err := meshDataParent(knobs.StorageMedium, i)
		if err != nil {
			return failed(err)
		}
		// --ephemeral removes the data at a clean exit; this removes it
		// after a crash too.
		mr.onCleanup(func() { _ = os.RemoveAll(parent) })
		name := fmt.Sprintf("mesh-etcd-%d", i)
		c, a, err := mr.r.startChild(ctx, mr, name, 0, "etcd", "--data-dir", parent, "--ephemeral",
			"--initial-cluster-token", fmt.Sprintf("stampede-mesh-%d", i))
		if err != nil {
			return failedUnlessInterrupted(ctx, err)
		}
		url := a.Endpoints["client"]
		if url == "" {
			return failed(fmt.Errorf("%s announced no \"client\" endpoint (see %s)", name, c.p.LogFile()))
		}
		mr.meas.AddProcess(name, c.p.PID(), 0)
		if m := a.Endpoints["metrics"]; m != "" {
			mr.meas.AddScrape(name, metricsURL(m), "")
		}
		if i == 0 {
			mr.r.fact("mesh.etcd.fsync", a.Extra["fsync"])
		}

		name = fmt.Sprintf("mesh-%d", i)
		args := []string{"mesh", "--replica", strconv.Itoa(i), "--etcd", url, "--source", string(source),
			"--cluster", s.Cluster.Name, "--api-url", mr.api.URL, "--token-file", tokenFile}
		if mr.api.CAFile != "" {
			args = append(args, "--ca-file", mr.api.CAFile)
		}
		c, a, err = mr.r.startChild(ctx, mr, name, 0, args...)
		if err != nil {
			return failedUnlessInterrupted(ctx, err)
		}
		mr.meas.AddProcess(name, c.p.PID(), 0)
		if m := a.Endpoints["metrics"]; m != "" {
			mr.meas.AddScrape(name, metricsURL(m), "")
		}
		mr.meshURLs = append(mr.meshURLs, url)
	}
	wctx, cancel := context.WithTimeout(ctx, meshSyncTimeout)
	defer cancel()
	for i, u := range mr.meshURLs {
		if err := waitMeshSynced(wctx, u, s.Cluster.Name); err != nil {
			return failedUnlessInterrupted(ctx, fmt.Errorf("mesh replica %d: %w", i, err))
		}
	}
	return nil
}

// waitMeshSynced returns once the replica's etcd at url holds the sync
// canaries of identities, the ipcache and nodes of cluster: the mirror
// listed each resource once (store.Synced in the clustermesh-apiserver's
// RegisterSynchronizer).
func waitMeshSynced(ctx context.Context, url, cluster string) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer cli.Close()
	keys := []string{
		agentcontract.SyncedKey(cluster, agentcontract.KVSyncedIdentities),
		agentcontract.SyncedKey(cluster, agentcontract.KVSyncedIPCache),
		agentcontract.SyncedKey(cluster, agentcontract.KVSyncedNodes),
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		missing := ""
		for _, k := range keys {
			resp, err := cli.Get(ctx, k)
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("sync canary %s not read: %w", k, context.Cause(ctx))
				}
				return fmt.Errorf("read canary %s: %w", k, err)
			}
			if len(resp.Kvs) == 0 {
				missing = k
				break
			}
		}
		if missing == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sync canary %s not written: %w", missing, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// newMeshUser is the user the mirror replicas authenticate as.
func newMeshUser() User {
	return User{Name: access.MeshUser, Role: RoleMesh, Token: randomToken()}
}
