package agentsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/internal/identity"
)

// IPIdentityPair is the JSON value of an ipcache key (the shared
// definition; the mesh mirror writes it, agents read it).
type IPIdentityPair = agentcontract.IPIdentityPair

// kvIPValue is the ipcache value kvstore-mode agents write, as
// identity.IPIdentityPair marshalled in the releases kvstore mode follows
// (cilium/cilium pkg/identity/identity.go before K8sPodUID and
// K8sServiceAccount were added): Mask without omitempty, written as null.
// Readers decode it with IPIdentityPair.
type kvIPValue struct {
	IP           net.IP     `json:"IP"`
	Mask         net.IPMask `json:"Mask"`
	HostIP       net.IP     `json:"HostIP"`
	ID           uint32     `json:"ID"`
	Key          uint8      `json:"Key"`
	Metadata     string     `json:"Metadata"`
	K8sNamespace string     `json:"K8sNamespace,omitempty"`
	K8sPodName   string     `json:"K8sPodName,omitempty"`
}

// kvClient is one agent's etcd client and its two sessions: the main one,
// whose lease (agent.leaseTTL) holds the agent's value keys and ipcache
// entries, and the lock session, whose lease (agent.kvstoreLockLeaseTTL)
// holds the allocator's locks, as Cilium's pkg/kvstore etcd client keeps a
// lease manager for its keys and another one, with pkg/defaults
// LockLeaseTTL (25 s), for its locks (1.17 to 1.19): a lock left behind
// by a dead or cut-off agent blocks other nodes for 25 s, not 15 minutes.
// When the session is lost (its lease expired or was revoked), keepAlive
// opens a new one and writes the node's keys again under it, as
// cilium-agent recreates its kvstore state.
type kvClient struct {
	a   *Agent
	cli *clientv3.Client
	ttl int // lease TTL in seconds
	// lim is the etcd client's rate limiter (agent.kvstoreQPS).
	lim *kvLimiter

	sessMu sync.Mutex
	sess   *concurrency.Session

	// lockTTL is the lock session's TTL in seconds; lockSess the lock
	// session, opened at the first lock and again after it was lost.
	lockTTL    int
	lockSessMu sync.Mutex
	lockSess   *concurrency.Session

	identitiesSynced chan struct{}
	ipcacheSynced    chan struct{}

	mu       sync.Mutex
	acquired map[string]identity.ID // label key -> ID referenced by this node
	// releasing holds the label keys whose value keys a releaseUnused is
	// deleting, so that concurrent endpoint syncs delete each only once.
	releasing map[string]bool
	written   map[netip.Addr]kvIPEntry

	// keyLocks serialises writes of one of this node's keys (value key or
	// ipcache entry), so that restoring the keys after a lost session
	// cannot put back a value the endpoint path has just replaced.
	keyLocks keyedMutex

	// pathLocks serialises this node's goroutines on one lock path before
	// they take the etcd lock: an etcd mutex is per session (its key is
	// <prefix><lease>), so two workers of the same agent locking the same
	// label key would both "hold" it, and the first unlock would let other
	// nodes in while the second still allocates (duplicates). Cilium's
	// kvstore.LockPath holds a process-local lock per path for the same
	// reason.
	pathLocks keyedMutex
}

func newKVClient(ctx context.Context, a *Agent) (*kvClient, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   a.cfg.KVStore,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		Context:     ctx,
	})
	if err != nil {
		return nil, fmt.Errorf("kvstore client: %w", err)
	}
	ttl := int(a.cfg.Knobs.LeaseTTL.Seconds())
	if ttl < 1 {
		ttl = 1
	}
	lockTTL := int(a.cfg.Knobs.KVStoreLockLeaseTTL.Seconds())
	if lockTTL < 1 {
		lockTTL = 1
	}
	k := &kvClient{
		a: a, cli: cli, ttl: ttl, lockTTL: lockTTL,
		lim:              newKVLimiter(a.cfg.Knobs.KVStoreQPS, a.m),
		identitiesSynced: make(chan struct{}),
		ipcacheSynced:    make(chan struct{}),
		acquired:         map[string]identity.ID{},
		releasing:        map[string]bool{},
		written:          map[netip.Addr]kvIPEntry{},
	}
	if k.sess, err = k.newSession(ctx, k.ttl); err != nil {
		cli.Close()
		return nil, err
	}
	return k, nil
}

// newSession grants a lease of ttl seconds and keeps it alive, retrying
// with backoff until it succeeds or ctx ends.
func (k *kvClient) newSession(ctx context.Context, ttl int) (*concurrency.Session, error) {
	a := k.a
	start := time.Now()
	for b := newBackoff(200*time.Millisecond, 10*time.Second); ; {
		sess, err := concurrency.NewSession(k.cli, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
		if err == nil {
			a.m.kvOps.WithLabelValues("lease", "ok").Inc()
			a.m.kvLatency.WithLabelValues("lease").Observe(time.Since(start).Seconds())
			return sess, nil
		}
		a.m.kvOps.WithLabelValues("lease", "error").Inc()
		d := b.next()
		a.log.Warn("kvstore session failed, retrying", "endpoints", a.cfg.KVStore, "retryIn", d, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d):
		}
	}
}

// session is the current session.
func (k *kvClient) session() *concurrency.Session {
	k.sessMu.Lock()
	defer k.sessMu.Unlock()
	return k.sess
}

// lockSession is the session whose lease holds this node's locks, opened
// on first use and again once lost (its lease expired or was revoked), as
// Cilium's lock lease manager grants a new lease when the old one is gone.
// ctx is the agent's: the session is kept alive until it ends.
func (k *kvClient) lockSession(ctx context.Context) (*concurrency.Session, error) {
	k.lockSessMu.Lock()
	defer k.lockSessMu.Unlock()
	if s := k.lockSess; s != nil {
		select {
		case <-s.Done():
		default:
			return s, nil
		}
	}
	s, err := k.newSession(ctx, k.lockTTL)
	if err != nil {
		return nil, err
	}
	k.lockSess = s
	return s, nil
}

func (k *kvClient) close() {
	// Closing the session revokes the lease: the node's keys go away, as
	// when a cilium-agent stops.
	sess := k.session()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(sess.Ctx()), 2*time.Second)
	defer cancel()
	_, _ = k.cli.Revoke(ctx, sess.Lease())
	sess.Orphan()
	k.lockSessMu.Lock()
	if ls := k.lockSess; ls != nil {
		_, _ = k.cli.Revoke(ctx, ls.Lease())
		ls.Orphan()
	}
	k.lockSessMu.Unlock()
	k.cli.Close()
}

// observe records one kvstore operation.
func (k *kvClient) observe(op string, start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	k.a.m.kvOps.WithLabelValues(op, outcome).Inc()
	k.a.m.kvLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

var errIDTaken = errors.New("identity ID already taken")

// allocateOnce is one attempt of the kvstore allocator (allocateIdentity
// runs the retries). It follows Cilium's pkg/allocator
// Allocator.Allocate and lockedAllocate (1.17 to 1.19): a label set this
// node already references (localKeys.use) needs no kvstore operation;
// every other use, the first local use of a label set, takes the label
// set's kvstore lock, even when the ID is known from the cache, because
// lockedAllocate calls backend.Lock before anything else. Under the lock
// the cached ID (GetIfLocked looks in the main cache first) or else an
// existing value key names the ID; otherwise a random free ID's master key
// is created only if absent (a transaction on CreateRevision == 0). Then
// this node's value key references it (AcquireReference).
func (k *kvClient) allocateOnce(ctx context.Context, l identity.Labels, key string) (identity.ID, error) {
	a := k.a
	start := time.Now()
	if err := k.pathLocks.lock(ctx, key); err != nil {
		return 0, fmt.Errorf("lock %s: %w", key, err)
	}
	defer k.pathLocks.unlock(key)
	// Another worker of this node may have referenced the label set while
	// this one waited: no need for the kvstore lock then.
	a.mu.Lock()
	ids := a.ids.idsOf(key)
	a.mu.Unlock()
	if len(ids) > 0 && k.references(key, ids[0]) {
		return ids[0], nil
	}
	sess, err := k.lockSession(ctx)
	if err != nil {
		return 0, fmt.Errorf("lock %s: %w", key, err)
	}
	mu := concurrency.NewMutex(sess, agentcontract.KVLockPrefix+key)
	err = mu.Lock(ctx)
	k.observe("lock", start, err)
	if err != nil {
		return 0, fmt.Errorf("lock %s: %w", key, err)
	}
	defer func() {
		// The lock must go even if this agent is busy or etcd slow: a
		// lock key left behind is held until the session's lease ends,
		// which for a live agent is never, and every other node waits
		// for it. Retry with a fresh timeout each time.
		for b := newBackoff(100*time.Millisecond, 5*time.Second); ; {
			start := time.Now()
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err := mu.Unlock(uctx)
			cancel()
			k.observe("unlock", start, err)
			if err == nil || sess.Ctx().Err() != nil {
				return
			}
			k.a.log.Warn("kvstore unlock failed, retrying", "key", key, "err", err)
			time.Sleep(b.next())
		}
	}()
	a.mu.Lock()
	ids = a.ids.idsOf(key)
	a.mu.Unlock()
	if len(ids) > 0 {
		return ids[0], k.acquire(ctx, ids[0], key)
	}
	done, err := k.lim.wait(ctx)
	if err != nil {
		return 0, fmt.Errorf("get value keys of %s: %w", key, err)
	}
	start = time.Now()
	resp, err := k.cli.Get(ctx, agentcontract.KVValuePrefix+key+"/", clientv3.WithPrefix(), clientv3.WithLimit(1))
	done()
	k.observe("get", start, err)
	if err != nil {
		return 0, fmt.Errorf("get value keys of %s: %w", key, err)
	}
	if len(resp.Kvs) > 0 {
		id, err := identity.ParseID(string(resp.Kvs[0].Value))
		if err == nil {
			if err := k.acquire(ctx, id, key); err != nil {
				return 0, err
			}
			return id, nil
		}
	}
	id, found, err := a.cachedOrFreeID(key)
	if err != nil {
		return 0, err
	}
	if found {
		return id, k.acquire(ctx, id, key)
	}
	master := agentcontract.KVIDPrefix + id.String()
	if done, err = k.lim.wait(ctx); err != nil {
		return 0, fmt.Errorf("create %s: %w", master, err)
	}
	start = time.Now()
	tx, err := k.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(master), "=", 0)).
		Then(clientv3.OpPut(master, key)).
		Commit()
	done()
	k.observe("create", start, err)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", master, err)
	}
	if !tx.Succeeded {
		return 0, fmt.Errorf("create %s: %w", master, errIDTaken)
	}
	a.identityCreated(id, l, key)
	if err := k.acquire(ctx, id, key); err != nil {
		return 0, err
	}
	return id, nil
}

// references tells whether this node's value key of a label key names id
// (Cilium's localKeys).
func (k *kvClient) references(key string, id identity.ID) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	got, ok := k.acquired[key]
	return ok && got == id
}

// acquire writes this node's value key for the identity (with the lease),
// once per label key.
func (k *kvClient) acquire(ctx context.Context, id identity.ID, key string) error {
	etcdKey := k.valueKey(key)
	if err := k.keyLocks.lock(ctx, etcdKey); err != nil {
		return fmt.Errorf("reference identity %d: %w", id, err)
	}
	defer k.keyLocks.unlock(etcdKey)
	k.mu.Lock()
	done := k.acquired[key] == id
	k.mu.Unlock()
	if done {
		return nil
	}
	if err := k.put(ctx, etcdKey, id.String()); err != nil {
		return fmt.Errorf("reference identity %d: %w", id, err)
	}
	k.mu.Lock()
	k.acquired[key] = id
	k.mu.Unlock()
	return nil
}

// valueKey is this node's value key of a label key.
func (k *kvClient) valueKey(key string) string {
	return agentcontract.KVValuePrefix + key + "/" + k.a.cfg.Node
}

// put writes one of this node's keys with the current session's lease.
func (k *kvClient) put(ctx context.Context, key, val string) error {
	done, err := k.lim.wait(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	_, err = k.cli.Put(ctx, key, val, clientv3.WithLease(k.session().Lease()))
	done()
	k.observe("put", start, err)
	return err
}

// kvIPEntry is what this node wrote for one of its endpoints' IPs.
type kvIPEntry struct {
	id      identity.ID
	ns, pod string
}

// putIP writes the ipcache entry of a local endpoint with the lease.
func (k *kvClient) putIP(ctx context.Context, ip netip.Addr, id identity.ID, ns, pod string) error {
	etcdKey := agentcontract.KVIPPrefix + ip.String()
	if err := k.keyLocks.lock(ctx, etcdKey); err != nil {
		return fmt.Errorf("write ipcache entry %s: %w", ip, err)
	}
	defer k.keyLocks.unlock(etcdKey)
	e := kvIPEntry{id: id, ns: ns, pod: pod}
	k.mu.Lock()
	done := k.written[ip] == e
	k.mu.Unlock()
	if done {
		return nil
	}
	val, err := k.ipValue(ip, e)
	if err != nil {
		return err
	}
	if err := k.put(ctx, etcdKey, val); err != nil {
		return fmt.Errorf("write ipcache entry %s: %w", ip, err)
	}
	k.mu.Lock()
	k.written[ip] = e
	k.mu.Unlock()
	return nil
}

// ipValue is the JSON of an ipcache entry this node writes.
func (k *kvClient) ipValue(ip netip.Addr, e kvIPEntry) (string, error) {
	pair := kvIPValue{
		IP: net.IP(ip.AsSlice()), ID: uint32(e.id),
		Metadata:     "cilium-global:default:" + k.a.cfg.Node,
		K8sNamespace: e.ns, K8sPodName: e.pod,
	}
	if k.a.cfg.NodeIP.IsValid() {
		pair.HostIP = net.IP(k.a.cfg.NodeIP.AsSlice())
	}
	val, err := json.Marshal(pair)
	if err != nil {
		return "", fmt.Errorf("encode ipcache entry %s: %w", ip, err)
	}
	return string(val), nil
}

// releaseUnused deletes this node's value keys of label sets that no
// local endpoint uses any more (the allocator's Release), so that the
// operator's garbage collection can remove the master key.
func (k *kvClient) releaseUnused(ctx context.Context, inUse map[string]bool) {
	k.mu.Lock()
	var drop []string
	for key := range k.acquired {
		if !inUse[key] && !k.releasing[key] {
			k.releasing[key] = true
			drop = append(drop, key)
		}
	}
	k.mu.Unlock()
	for _, key := range drop {
		k.release(ctx, key)
	}
	k.mu.Lock()
	for _, key := range drop {
		delete(k.releasing, key)
	}
	k.mu.Unlock()
}

// release deletes this node's value key of a label key.
func (k *kvClient) release(ctx context.Context, key string) {
	k.deleteOwn(ctx, k.valueKey(key), func(err error) {
		if err != nil {
			k.a.log.Debug("release identity reference", "key", key, "err", err)
			return
		}
		delete(k.acquired, key)
	})
}

// deleteIP removes a local endpoint's ipcache entry.
func (k *kvClient) deleteIP(ctx context.Context, ip netip.Addr) {
	k.deleteOwn(ctx, agentcontract.KVIPPrefix+ip.String(), func(error) { delete(k.written, ip) })
}

// deleteOwn deletes one of this node's keys under its key lock, then runs
// forget with the outcome, holding k.mu, before another write of that key
// (a restore after a lost session) can start.
func (k *kvClient) deleteOwn(ctx context.Context, etcdKey string, forget func(error)) {
	if err := k.keyLocks.lock(ctx, etcdKey); err != nil {
		return
	}
	defer k.keyLocks.unlock(etcdKey)
	done, err := k.lim.wait(ctx)
	if err != nil {
		return
	}
	start := time.Now()
	_, err = k.cli.Delete(ctx, etcdKey)
	done()
	k.observe("delete", start, err)
	k.mu.Lock()
	forget(err)
	k.mu.Unlock()
}

// keepAlive watches the session. When it is lost (the client saw no
// keepalive answer within the TTL, or etcd said the lease is gone), the
// node's keys expire with the lease: it opens a new session and writes
// them again under the new lease, then revokes the old lease so that
// locks taken under it do not hold other nodes up until it expires.
func (k *kvClient) keepAlive(ctx context.Context) {
	// A session that dies young (an overloaded etcd does not answer the
	// first keepalive within the client's dial timeout + 1 s) is replaced
	// after a growing pause, so that the agents do not add a storm of
	// grants and rewrites to the overload.
	b := newBackoff(time.Second, time.Minute)
	for {
		old := k.session()
		born := time.Now()
		select {
		case <-ctx.Done():
			return
		case <-old.Done():
		}
		if ctx.Err() != nil {
			return
		}
		k.a.m.kvOps.WithLabelValues("session", "lost").Inc()
		wait := time.Duration(0)
		if time.Since(born) < time.Minute {
			wait = b.next()
		} else {
			b.reset()
		}
		k.a.log.Warn("kvstore session lost; opening a new one and writing this node's keys again", "lease", old.Lease(), "after", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		sess, err := k.newSession(ctx, k.ttl)
		if err != nil {
			return
		}
		k.sessMu.Lock()
		k.sess = sess
		k.sessMu.Unlock()
		k.restoreKeys(ctx)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, _ = k.cli.Revoke(rctx, old.Lease())
		cancel()
	}
}

// restoreKeys writes every value key and ipcache entry this node holds
// again with the current session's lease, retrying until each is written
// or ctx ends. A key the endpoint path changed or deleted meanwhile is
// left to it.
func (k *kvClient) restoreKeys(ctx context.Context) {
	k.mu.Lock()
	keys := make([]string, 0, len(k.acquired))
	for key := range k.acquired {
		keys = append(keys, key)
	}
	ips := make([]netip.Addr, 0, len(k.written))
	for ip := range k.written {
		ips = append(ips, ip)
	}
	k.mu.Unlock()
	restore := func(etcdKey string, current func() (string, bool, error)) {
		for b := newBackoff(200*time.Millisecond, 10*time.Second); ctx.Err() == nil; {
			tried, err := k.rewrite(ctx, etcdKey, current)
			if err == nil || ctx.Err() != nil {
				return
			}
			if !tried {
				k.a.log.Warn("kvstore: cannot restore a key", "key", etcdKey, "err", err)
				return
			}
			k.a.log.Debug("kvstore: restoring a key failed, retrying", "key", etcdKey, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(b.next()):
			}
		}
	}
	for _, key := range keys {
		restore(k.valueKey(key), func() (string, bool, error) {
			k.mu.Lock()
			id, ok := k.acquired[key]
			k.mu.Unlock()
			return id.String(), ok, nil
		})
	}
	for _, ip := range ips {
		restore(agentcontract.KVIPPrefix+ip.String(), func() (string, bool, error) {
			k.mu.Lock()
			e, ok := k.written[ip]
			k.mu.Unlock()
			if !ok {
				return "", false, nil
			}
			val, err := k.ipValue(ip, e)
			return val, true, err
		})
	}
}

// rewrite puts one of this node's keys again under its key lock, with the
// value current gives from what the node holds now; current says false
// when the node no longer holds the key, and nothing is written. tried
// tells a failed put from a key that could not be read or locked.
func (k *kvClient) rewrite(ctx context.Context, etcdKey string, current func() (string, bool, error)) (tried bool, err error) {
	if err := k.keyLocks.lock(ctx, etcdKey); err != nil {
		return false, err
	}
	defer k.keyLocks.unlock(etcdKey)
	val, ok, err := current()
	if err != nil || !ok {
		return false, err
	}
	return true, k.put(ctx, etcdKey, val)
}

// syncLocalKeys re-creates, every agent.kvstorePeriodicSync (Cilium's
// --kvstore-periodic-sync), the master key of
// each identity this node references if it is missing, and then the
// node's value key, as Cilium's allocator does (syncLocalKeys and the
// kvstore backend's UpdateKey). The operator's GC deletes a master key
// that had no value key in two rounds in a row; under load a node's value
// key can come later than that, and every other node then loses the
// identity until a user re-creates it.
func (k *kvClient) syncLocalKeys(ctx context.Context) {
	t := time.NewTicker(k.a.cfg.Knobs.KVStorePeriodicSync.Duration)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		k.mu.Lock()
		used := make(map[string]identity.ID, len(k.acquired))
		for key, id := range k.acquired {
			used[key] = id
		}
		k.mu.Unlock()
		for key, id := range used {
			if ctx.Err() != nil {
				return
			}
			master := agentcontract.KVIDPrefix + id.String()
			done, err := k.lim.wait(ctx)
			if err != nil {
				return
			}
			start := time.Now()
			tx, err := k.cli.Txn(ctx).
				If(clientv3.Compare(clientv3.CreateRevision(master), "=", 0)).
				Then(clientv3.OpPut(master, key)).
				Commit()
			done()
			k.observe("sync", start, err)
			if err != nil || !tx.Succeeded {
				continue
			}
			k.a.m.kvOps.WithLabelValues("master", "recreated").Inc()
			k.a.log.Info("kvstore: re-created a missing master key", "id", id, "key", key)
			_, _ = k.rewrite(ctx, k.valueKey(key), func() (string, bool, error) {
				k.mu.Lock()
				defer k.mu.Unlock()
				return id.String(), k.acquired[key] == id, nil
			})
		}
	}
}

// reader is the kvReader of the kvstore: it retries on the same etcd.
func (k *kvClient) reader() *kvReader {
	return &kvReader{a: k.a, cli: k.cli, observe: k.observe, lim: k.lim}
}

func (k *kvClient) watchIdentities(ctx context.Context) {
	k.reader().watchIdentities(ctx, "kvstore-identities", k.identitiesSynced)
}

func (k *kvClient) watchIPCache(ctx context.Context) {
	k.reader().watchIPCache(ctx, "kvstore-ipcache", k.ipcacheSynced)
}

// kvReader lists and watches prefixes of one etcd for one agent and
// decodes what arrives into the agent's caches: the read side kvstore mode
// (kvClient) and the mesh read path (meshClient) share, so that both
// decode and count alike.
type kvReader struct {
	a   *Agent
	cli *clientv3.Client
	// observe records one etcd operation (kvClient.observe).
	observe func(op string, start time.Time, err error)
	// fail, if set, ends the watch on a failed list instead of retrying
	// on the same etcd: the mesh client moves to another replica then.
	fail func(error)
	// check, if set, vets every response header (the mesh client compares
	// the etcd cluster ID); an error is handled as a failed list.
	check func(*etcdserverpb.ResponseHeader) error
	// lim is the etcd client's rate limiter (nil: none): a list, however
	// many pages, and each watch start wait on it once, as in Cilium's
	// etcdClient.watch.
	lim *kvLimiter
}

// list reads every key under prefix in pages of kvListBatch keys at one
// revision, as Cilium's paginatedList does (serializable reads, sorted by
// key). The returned header is the first page's, whose revision every
// page was read at.
func (k *kvReader) list(ctx context.Context, prefix string) (_ *etcdserverpb.ResponseHeader, _ []kvPair, err error) {
	done, err := k.lim.wait(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer done()
	began := time.Now()
	defer func() { k.observe("list", began, err) }()
	var (
		header *etcdserverpb.ResponseHeader
		out    []kvPair
		rev    int64
	)
	start, end := prefix, clientv3.GetPrefixRangeEnd(prefix)
	for {
		var resp *clientv3.GetResponse
		resp, err = k.cli.Get(ctx, start, clientv3.WithRange(end), clientv3.WithRev(rev),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend), clientv3.WithSerializable(),
			clientv3.WithLimit(kvListBatch))
		if err != nil {
			return nil, nil, err
		}
		if k.check != nil {
			if err = k.check(resp.Header); err != nil {
				return nil, nil, err
			}
		}
		if header == nil {
			header, rev = resp.Header, resp.Header.Revision
			out = make([]kvPair, 0, resp.Count)
		}
		for _, kv := range resp.Kvs {
			out = append(out, kvPair{key: string(kv.Key), value: kv.Value})
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return header, out, nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// watchPrefix lists a prefix, hands the result to replace, then watches
// from the next revision, listing again after compaction or errors.
func (k *kvReader) watchPrefix(ctx context.Context, name, prefix string, synced chan struct{},
	replace func(kvs []kvPair), event func(put bool, key string, value []byte)) {
	b := newBackoff(800*time.Millisecond, 30*time.Second)
	lists := 0
	// What the agent received and holds of the prefix (agentWork).
	rw := k.a.work.resource(name)
	held := newObjectSizes(rw)
	for ctx.Err() == nil {
		if lists > 0 {
			k.a.m.relists.WithLabelValues(name).Inc()
		}
		lists++
		header, kvs, err := k.list(ctx, prefix)
		if err != nil && k.fail != nil {
			if ctx.Err() == nil {
				k.a.m.watchErrors.WithLabelValues(name).Inc()
			}
			k.fail(err)
			return
		}
		if err != nil {
			k.a.m.watchErrors.WithLabelValues(name).Inc()
			d := b.next()
			k.a.log.Warn("kvstore list failed, retrying", "prefix", prefix, "retryIn", d, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
			continue
		}
		held.reset()
		for _, kv := range kvs {
			n := len(kv.key) + len(kv.value)
			k.a.m.bytes.WithLabelValues(name).Add(float64(n))
			rw.bytes.Add(uint64(n))
			held.set(kvObjectKeyString(kv.key), n)
		}
		held.publish()
		replace(kvs)
		select {
		case <-synced:
		default:
			close(synced)
		}
		b.reset()
		done, err := k.lim.wait(ctx)
		if err != nil {
			return
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := k.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(header.Revision+1))
		done()
		for wr := range wch {
			err := wr.Err()
			if err == nil && k.check != nil {
				err = k.check(&wr.Header)
			}
			if err != nil {
				k.a.m.watchErrors.WithLabelValues(name).Inc()
				k.a.log.Debug("kvstore watch ended, listing again", "prefix", prefix, "err", err)
				break
			}
			for _, ev := range wr.Events {
				k.a.m.events.WithLabelValues(name, ev.Type.String()).Inc()
				k.a.m.bytes.WithLabelValues(name).Add(float64(len(ev.Kv.Key) + len(ev.Kv.Value)))
				rw.events.Add(1)
				rw.bytes.Add(uint64(len(ev.Kv.Key) + len(ev.Kv.Value)))
				if ev.Type == clientv3.EventTypePut {
					held.set(kvObjectKey(ev.Kv.Key), len(ev.Kv.Key)+len(ev.Kv.Value))
				} else {
					held.delete(kvObjectKey(ev.Kv.Key))
				}
				held.publish()
				start := time.Now()
				event(ev.Type == clientv3.EventTypePut, string(ev.Kv.Key), ev.Kv.Value)
				k.a.m.eventLatency.WithLabelValues(name).Observe(time.Since(start).Seconds())
			}
		}
		cancel()
	}
}

type kvPair struct {
	key   string
	value []byte
}

// watchIdentities keeps the agent's identity cache equal to the identity
// prefix (KVIDPrefix): master keys, value the label key.
func (k *kvReader) watchIdentities(ctx context.Context, name string, synced chan struct{}) {
	a := k.a
	parse := func(key string, value []byte) (identity.ID, identity.Labels, string, bool) {
		id, err := identity.ParseID(strings.TrimPrefix(key, agentcontract.KVIDPrefix))
		if err != nil {
			return 0, nil, "", false
		}
		l, err := identity.ParseKey(string(value))
		if err != nil {
			a.log.Debug("ignoring kvstore identity with a bad key", "key", key, "err", err)
			return 0, nil, "", false
		}
		return id, l, string(value), true
	}
	k.watchPrefix(ctx, name, agentcontract.KVIDPrefix, synced,
		func(kvs []kvPair) {
			a.mu.Lock()
			defer a.mu.Unlock()
			seen := map[identity.ID]bool{}
			for _, kv := range kvs {
				if id, l, key, ok := parse(kv.key, kv.value); ok {
					seen[id] = true
					a.upsertIdentity(id, l, key)
				}
			}
			a.keepIdentities(seen)
		},
		func(put bool, key string, value []byte) {
			a.events.Add(1)
			if !put {
				id, err := identity.ParseID(strings.TrimPrefix(key, agentcontract.KVIDPrefix))
				if err == nil {
					a.mu.Lock()
					a.deleteIdentity(id)
					a.mu.Unlock()
				}
				return
			}
			if id, l, lk, ok := parse(key, value); ok {
				a.mu.Lock()
				a.upsertIdentity(id, l, lk)
				a.mu.Unlock()
			}
		})
}

// kvOwner is the owner of every kvstore ipcache entry: the key is the IP.
const kvOwner = 1

// watchIPCache keeps the agent's ipcache entries of owner kvOwner equal
// to the ipcache prefix (KVIPPrefix): IPIdentityPair values.
func (k *kvReader) watchIPCache(ctx context.Context, name string, synced chan struct{}) {
	a := k.a
	parse := func(key string, value []byte) (uint32, identity.ID, bool) {
		ip, err := netip.ParseAddr(strings.TrimPrefix(key, agentcontract.KVIPPrefix))
		if err != nil {
			return 0, 0, false
		}
		ipk, ok := addrKey(ip)
		if !ok {
			return 0, 0, false
		}
		if value == nil {
			return ipk, 0, true
		}
		// Only the identity is used: the narrow decode keeps the per-event
		// cost of kvstore mode as it was measured.
		var pair struct {
			ID uint32 `json:"ID"`
		}
		if err := json.Unmarshal(value, &pair); err != nil || pair.ID == 0 {
			return 0, 0, false
		}
		return ipk, identity.ID(pair.ID), true
	}
	k.watchPrefix(ctx, name, agentcontract.KVIPPrefix, synced,
		func(kvs []kvPair) {
			a.mu.Lock()
			defer a.mu.Unlock()
			seen := map[uint32]bool{}
			for _, kv := range kvs {
				if ip, id, ok := parse(kv.key, kv.value); ok && id != 0 {
					seen[ip] = true
					a.setIP(ip, id, kvOwner)
				}
			}
			for ip := range a.ipc.entries {
				if !seen[ip] {
					a.deleteIP(ip, kvOwner)
				}
			}
		},
		func(put bool, key string, value []byte) {
			a.events.Add(1)
			if !put {
				value = nil
			}
			ip, id, ok := parse(key, value)
			if !ok {
				return
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			if !put {
				a.deleteIP(ip, kvOwner)
				return
			}
			a.setIP(ip, id, kvOwner)
		})
}
