package fakeapi

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apiserver/pkg/storage"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// AdminUser is the user of the admin token RESTConfig carries; it is in
// group system:masters, which every authorization table allows.
const AdminUser = "stampede-admin"

// Server is an in-memory Kubernetes API server.
type Server struct {
	cfg        Config
	log        *slog.Logger
	rv         atomic.Uint64
	resources  []*resource
	byPath     map[string]*resource // "group/version/plural", core group ""
	stores     map[*resource]*store
	adminToken string
	tokens     map[string]*user
	metrics    *metrics
	apf        *apf // nil: no concurrency limit
	apfStop    func()
	budget     *budget  // nil: no capacity model
	byUser     sync.Map // user name -> *atomic.Int64
	byRequest  sync.Map // RequestKey -> *atomic.Int64
	wal        *wal     // the state directory's log (nil: no state directory)

	certPEM []byte
	cert    tls.Certificate
	caFile  string

	ln      net.Listener
	srv     *http.Server
	started atomic.Bool

	baseCtx   context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup // goroutines Start started
	activeMu  sync.RWMutex
	closing   bool
	active    sync.WaitGroup // requests in flight (watches included)
	closeOnce sync.Once
	closeErr  error
}

type user struct {
	name   string
	groups []string
}

// New validates cfg, applies defaults and builds a Server. Nothing listens
// until Start.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("fakeapi config: %w", err)
	}
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger,
		byPath: map[string]*resource{},
		stores: map[*resource]*store{},
		tokens: map[string]*user{},
	}
	s.resources = builtinResources()
	for _, r := range s.resources {
		s.byPath[r.group+"/"+r.version+"/"+r.name] = r
		s.stores[r] = newStore(r, &s.rv, cfg.WatchHistory, cfg.Now)
	}
	tok, err := adminToken(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	s.adminToken = tok
	s.tokens[s.adminToken] = &user{name: AdminUser, groups: []string{"system:masters", "system:authenticated"}}
	for _, t := range cfg.Tokens {
		s.tokens[t.Token] = &user{name: t.User, groups: append(append([]string(nil), t.Groups...), "system:authenticated")}
	}
	// With APF on, kube-apiserver's server concurrency limit is the sum
	// of the two in-flight limits (k8s.io/apiserver pkg/server/options
	// recommended.go, ApplyTo: MaxRequestsInFlight +
	// MaxMutatingRequestsInFlight), shared out among priority levels.
	if limit := max(cfg.MaxRequestsInflight, 0) + max(cfg.MaxMutatingRequestsInflight, 0); limit > 0 {
		s.apf = newAPF(limit, s.storageStats)
	}
	m, err := newMetrics(cfg.Registry, s)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	if cfg.Capacity != nil {
		if s.budget, err = newBudget(cfg.Capacity, cfg.Now, cfg.Registry); err != nil {
			return nil, fmt.Errorf("register capacity metrics: %w", err)
		}
	}
	if cfg.StateDir != "" {
		restored, err := s.restoreState(cfg.StateDir)
		if err != nil {
			return nil, err
		}
		if restored {
			return s, nil
		}
	}
	// The namespaces a cluster starts with.
	ns := s.storeFor("", "v1", "namespaces")
	for _, name := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		d := &document{fields: map[string]json.RawMessage{}}
		d.meta.Name = name
		if err := ns.prepareMeta(d, "", ""); err != nil {
			return nil, err
		}
		if _, err := ns.create(d); err != nil {
			return nil, fmt.Errorf("create namespace %s: %w", name, err)
		}
	}
	return s, nil
}

// storageStats gives APF's work estimator the stored objects of a
// resource, keyed as schema.GroupResource.String() ("pods",
// "ciliumendpoints.cilium.io"), as kube-apiserver's object count tracker
// does from etcd.
func (s *Server) storageStats(groupResource string) (storage.Stats, error) {
	for _, r := range s.resources {
		if r.groupResource().String() != groupResource {
			continue
		}
		st := s.stores[r]
		n := int64(st.count())
		stats := storage.Stats{ObjectCount: n}
		if n > 0 {
			stats.EstimatedAverageObjectSizeBytes = st.objBytes.Load() / n
		}
		return stats, nil
	}
	return storage.Stats{}, fmt.Errorf("no resource %s", groupResource)
}

func (s *Server) storeFor(group, version, plural string) *store {
	r := s.byPath[group+"/"+version+"/"+plural]
	if r == nil {
		return nil
	}
	return s.stores[r]
}

// Start listens and serves in the background until Close is called or ctx
// ends. It returns once the server accepts connections.
func (s *Server) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("fakeapi: Start called twice")
	}
	s.activeMu.RLock()
	closed := s.closing
	s.activeMu.RUnlock()
	if closed {
		return errors.New("fakeapi: Start after Close")
	}
	s.baseCtx, s.cancel = context.WithCancel(ctx)
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: 1000},
	}
	if s.cfg.PlainHTTP {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		s.srv.Protocols = &p
	} else {
		if err := s.makeCert(); err != nil {
			_ = ln.Close()
			return err
		}
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{s.cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
	}
	if s.apf != nil {
		if s.apfStop, err = s.apf.run(s.baseCtx); err != nil {
			_ = ln.Close()
			return err
		}
	}
	if s.budget != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.budget.runBackground(s.baseCtx)
		}()
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		var err error
		if s.cfg.PlainHTTP {
			err = s.srv.Serve(ln)
		} else {
			err = s.srv.ServeTLS(ln, "", "")
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("fakeapi serve", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		<-s.baseCtx.Done()
		s.shutdown()
	}()
	s.log.Info("fakeapi serving", "url", s.URL())
	return nil
}

// Addr is the address the server listens on (host:port), empty before Start.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL is the base URL of the API (https://host:port or http://host:port).
func (s *Server) URL() string {
	if s.cfg.PlainHTTP {
		return "http://" + s.Addr()
	}
	return "https://" + s.Addr()
}

// CAFile is the path of the PEM certificate clients trust, if Config.CertDir
// was set and TLS is on; empty otherwise.
func (s *Server) CAFile() string { return s.caFile }

// CAData is the PEM certificate clients trust (nil with PlainHTTP).
func (s *Server) CAData() []byte { return s.certPEM }

// AdminToken is the bearer token of AdminUser.
func (s *Server) AdminToken() string { return s.adminToken }

// RESTConfig is a client-go config for AdminUser: JSON content type and no
// client-side rate limit (QPS -1); callers copy it and set their own.
func (s *Server) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            s.URL(),
		BearerToken:     s.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: s.certPEM},
		ContentConfig:   rest.ContentConfig{ContentType: "application/json", AcceptContentTypes: "application/json"},
		QPS:             -1,
	}
}

// WriteKubeconfig writes a kubeconfig for AdminUser to path (mode 0600).
func (s *Server) WriteKubeconfig(path string) error {
	c := clientcmdapi.NewConfig()
	c.Clusters["stampede"] = &clientcmdapi.Cluster{Server: s.URL(), CertificateAuthorityData: s.certPEM}
	c.AuthInfos["stampede-admin"] = &clientcmdapi.AuthInfo{Token: s.adminToken}
	c.Contexts["stampede"] = &clientcmdapi.Context{Cluster: "stampede", AuthInfo: "stampede-admin"}
	c.CurrentContext = "stampede"
	if err := clientcmd.WriteToFile(*c, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// RequestsByUser returns how many requests each authenticated user made
// (every verb, watches and discovery included).
func (s *Server) RequestsByUser() map[string]int64 {
	out := map[string]int64{}
	s.byUser.Range(func(k, v any) bool {
		out[k.(string)] = v.(*userCount).n.Load()
		return true
	})
	return out
}

// RequestKey is what RequestCounts counts by: one user's requests of one
// verb (get, list, watch, create, update, patch, delete,
// deletecollection) on one resource of an API group; Resource is
// "plural/subresource" for subresources, as in RBAC rules.
type RequestKey struct {
	User, Verb, Group, Resource string
}

// RequestCounts returns how many resource requests each user made, by
// verb and resource (discovery and non-resource paths are not counted;
// requests later denied are).
func (s *Server) RequestCounts() map[RequestKey]int64 {
	out := map[RequestKey]int64{}
	s.byRequest.Range(func(k, v any) bool {
		out[k.(RequestKey)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// countRequest counts rq in RequestCounts.
func (s *Server) countRequest(rq *request) {
	k := RequestKey{Verb: rq.verb, Group: rq.res.group, Resource: rq.res.name}
	if rq.user != nil {
		k.User = rq.user.name
	}
	if rq.subresource != "" {
		k.Resource += "/" + rq.subresource
	}
	v, ok := s.byRequest.Load(k)
	if !ok {
		v, _ = s.byRequest.LoadOrStore(k, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
}

func (s *Server) shutdown() {
	s.closeOnce.Do(func() {
		s.activeMu.Lock()
		s.closing = true
		s.activeMu.Unlock()
		if s.cancel != nil {
			s.cancel()
		}
		if s.srv != nil {
			s.closeErr = s.srv.Close()
		}
	})
}

// Close stops serving, ends every watch and waits for every goroutine the
// server started. It is safe to call more than once.
func (s *Server) Close() error {
	s.shutdown()
	s.active.Wait()
	s.wg.Wait()
	if s.apfStop != nil {
		s.apfStop()
		s.apfStop = nil
	}
	if s.caFile != "" {
		_ = os.Remove(s.caFile)
	}
	return errors.Join(s.closeErr, s.wal.close())
}

func (s *Server) makeCert() error {
	if certPEM, keyPEM, ok, err := stateKeyPair(s.cfg.StateDir); err != nil {
		return err
	} else if ok {
		if s.cert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
			return fmt.Errorf("state dir: load key pair: %w", err)
		}
		s.certPEM = certPEM
		return s.writeCA()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return fmt.Errorf("generate serial: %w", err)
	}
	now := s.cfg.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "stampede-fakeapi"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	if host, _, err := net.SplitHostPort(s.ln.Addr().String()); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	s.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	s.cert, err = tls.X509KeyPair(s.certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("load key pair: %w", err)
	}
	if err := saveKeyPair(s.cfg.StateDir, s.certPEM, keyPEM); err != nil {
		return err
	}
	return s.writeCA()
}

// writeCA writes the certificate to the cert dir as ca.crt.
func (s *Server) writeCA() error {
	if s.cfg.CertDir != "" {
		if err := os.MkdirAll(s.cfg.CertDir, 0o755); err != nil {
			return fmt.Errorf("cert dir: %w", err)
		}
		// Never over a file that is there already: it may be a CA the user
		// meant to serve (fakeapi has no key for it), and Close removes
		// the file it wrote.
		p := filepath.Join(s.cfg.CertDir, "ca.crt")
		// A server restarted over its state directory after a kill finds
		// the ca.crt it wrote before: the same certificate, kept.
		if old, err := os.ReadFile(p); err == nil && s.cfg.StateDir != "" && bytes.Equal(old, s.certPEM) {
			s.caFile = p
			return nil
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("cert dir: %s exists; fakeapi writes its own self-signed certificate there and removes it on exit, so give a directory without ca.crt", p)
		}
		if err != nil {
			return fmt.Errorf("write certificate: %w", err)
		}
		_, werr := f.Write(s.certPEM)
		if err := errors.Join(werr, f.Close()); err != nil {
			_ = os.Remove(p)
			return fmt.Errorf("write certificate %s: %w", p, err)
		}
		s.caFile = p
	}
	return nil
}
