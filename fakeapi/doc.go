// Package fakeapi is an in-memory Kubernetes API server that unmodified
// client-go and kubectl talk to over real HTTP. It keeps objects as written
// (JSON) with server-set metadata, serves list/watch with resourceVersion
// semantics, and fans out watch events the way the watch cache does.
//
// # Lifecycle
//
// New validates a Config (zero fields take the Default* values) and builds
// a Server; nothing listens yet. Start listens and serves in the background
// until Close is called or Start's context ends. Close ends every watch,
// closes every connection and waits for every goroutine and request the
// server started; call it once Start succeeded (it is safe to call twice).
// Addr, URL, RESTConfig, CAData and WriteKubeconfig are valid after Start.
// Run is the whole life of the `stampede fakeapi` process.
//
//	s, err := fakeapi.New(fakeapi.Config{Tokens: tokens})
//	if err := s.Start(ctx); err != nil { ... }
//	defer s.Close()
//	cs, err := kubernetes.NewForConfig(s.RESTConfig())
//
// # What is served
//
// core/v1 namespaces, pods, nodes, services, configmaps and
// serviceaccounts; coordination.k8s.io/v1 leases; discovery.k8s.io/v1
// endpointslices; networking.k8s.io/v1 networkpolicies; cilium.io/v2
// ciliumidentities, ciliumendpoints, ciliumnetworkpolicies,
// ciliumclusterwidenetworkpolicies, ciliumcidrgroups and ciliumnodes;
// cilium.io/v2alpha1 ciliumendpointslices and ciliumcidrgroups (a
// collection of its own, not converted from v2). Namespaces, pods, nodes,
// services, ciliumidentities, ciliumnetworkpolicies,
// ciliumclusterwidenetworkpolicies and ciliumnodes have a /status subresource (create
// and update of the main resource then ignore status; pods start Pending);
// ciliumendpoints do not, so agents JSON-patch /status on the object.
// Namespaces default, kube-system, kube-public and kube-node-lease exist
// from the start; namespaced objects need their namespace; deleting a
// namespace deletes what it holds at once.
//
// Verbs: get; list with label selectors, field selectors (metadata.name,
// metadata.namespace and, for pods, spec.nodeName), limit/continue and
// resourceVersion/resourceVersionMatch; watch (also /watch/ paths) with
// resourceVersion resume, sendInitialEvents (client-go's watch-list, on by
// default since 1.35), bookmarks, timeoutSeconds, and 410 Expired (as an
// ERROR event) for a resourceVersion older than the retained history;
// create with generateName; update with optimistic concurrency (409 on a
// stale resourceVersion; leases may be created by PUT; an update or patch
// is decoded, applied and validated without the resource's lock and
// committed only if the object did not change meanwhile, else done again,
// as kube-apiserver's GuaranteedUpdate does); JSON patch, merge
// patch, and strategic merge patch for built-in types (415 for custom
// resources, as kube-apiserver answers); delete with uid/resourceVersion
// preconditions and finalizers (deletionTimestamp until the last finalizer
// goes); deletecollection. kubectl get is answered with a meta.k8s.io Table
// (columns Name and Age). Discovery is served in its legacy form with
// Content-Type application/json, which clients asking for aggregated
// discovery take as the fallback; /openapi/v2 is an empty document so that
// kubectl's client-side validation and apply work. Errors are metav1.Status
// with kube-apiserver's codes and reasons (400, 401, 403, 404, 405, 409
// AlreadyExists/Conflict, 410 Expired, 413, 415, 422 Invalid with field
// causes, 429 with Retry-After, 504 for a too large resourceVersion).
//
// Bodies are JSON (also YAML, and protobuf for built-in types because
// kubectl sends it); responses are always JSON, also to clients that ask
// for protobuf, as kube-apiserver answers for custom resources. RESTConfig
// sets ContentType application/json.
//
// # Authentication, authorization, limits
//
// Bearer tokens only: the admin token (user AdminUser, group
// system:masters) that RESTConfig and WriteKubeconfig carry, plus
// Config.Tokens (LoadTokenFile reads kube-apiserver's token CSV). Without a
// valid token a request is 401, unless AllowAnonymous. Config.Rules
// (LoadAuthzFile) allow users/groups verbs on apiGroups/resources with "*"
// wildcards and answer 403 with RBAC's message otherwise; nil Rules allow
// any authenticated user everything. /healthz, /livez, /readyz, /version,
// /metrics and /debug/pprof/ need no token. RequestsByUser and
// stampede_fakeapi_requests_by_user_total{user} count requests per user;
// RequestCounts counts resource requests per user, verb and resource.
// API Priority and Fairness is kube-apiserver's own (k8s.io/apiserver
// v0.36: its config controller, fair queuing and WithPriorityAndFairness
// filter, between authentication and authorization as in kube-apiserver)
// with the bootstrap FlowSchemas and PriorityLevelConfigurations and the
// server concurrency limit MaxRequestsInflight +
// MaxMutatingRequestsInflight (as kube-apiserver computes it when APF is
// on; both negative: no limit, no APF). Requests are classified by their
// user and kube-apiserver's RequestInfo, take the seats its work estimator
// gives (LISTs by object count and size, mutating requests by watchers),
// wait in shuffle-sharded queues (at most 15 s, RequestTimeout/4), and get
// 429 with Retry-After only when their queues are full or the wait
// expired. A watch holds its seats until its initial events are written.
// The configuration objects live in a client-go fake clientset the
// controller reads, not in the served API.
// Bodies over MaxBodyBytes (3 MiB) are 413. A panicking handler answers 500
// and is counted in stampede_fakeapi_handler_panics_total.
//
// # Watch fan-out
//
// Each resource keeps a ring of its last WatchHistory events. A write
// encodes the object once, into a buffer that is at the same time the
// stored object's JSON and the event's watch frame
// ({"type":...,"object":...}); every watcher writes those shared bytes, and
// no watcher encodes anything per event (a watcher whose selector an object
// starts or stops matching writes the same object bytes behind an ADDED or
// DELETED prefix). Watchers read the ring at their own position; a watcher
// that falls more than WatchBuffer events behind is closed (the client
// re-watches or re-lists, as against kube-apiserver) and counted in
// apiserver_terminated_watchers_total; the history a resumed watch
// replays does not count (kube-apiserver replays it from its watch cache).
// Watchers of pods by spec.nodeName are
// woken only by their node's events, like kube-apiserver's indexed
// triggers. A woken watcher waits WatchBatchWindow (50 ms) for more events
// and writes them in one batch through a pooled buffer.
//
// # Capacity model
//
// With Config.Capacity (`--capacity-cores`, `--capacity-profile`) the
// server has the CPU of a kube-apiserver with its etcd of Cores cores of
// the calibration machine (capacity.go). Every request is charged its
// profile cost, Requests[verb] by objects returned and KiB of bodies and
// scaled by Resources[resource][verb] where measured (a write before it
// runs, a read after, a watch's initial events as a list), and every watch
// event Watch.Encode once (per watcher when replayed) plus Watch.Deliver
// per watcher; the idle rate (Background) is charged all the time and a
// scrape of /metrics as MetricsScrape. The budget serves that work round
// robin in 10 ms slices at Cores CPU-seconds per second, as the Go
// scheduler runs goroutines (no piece faster than one core); a request holding its APF
// seats waits until its work is served, a watcher until its batch is, so
// request latency, APF queueing and 429s, and watch delivery delay follow
// from the load. A watcher then may hold two watch-channel sizes of events
// (kube-apiserver's cacheWatcher input and result channels, sized as
// suggestedWatchChannelSize does) before it is closed, instead of
// WatchBuffer. stampede_fakeapi_modelled_cpu_seconds_total{kind} is the
// CPU the model charged; stampede_fakeapi_modelled_backlog_seconds how far
// behind it is. Without Capacity the server is as fast as its machine.
//
// # Metrics
//
// On the server's own registry (Config.Registry), named and labelled as
// kube-apiserver's: apiserver_request_total{verb, dry_run, group, version,
// resource, subresource, scope, component, code},
// apiserver_request_duration_seconds{verb, dry_run, group, version,
// resource, subresource, scope, component} (WATCH observed when the watch
// ends), apiserver_current_inflight_requests{request_kind},
// apiserver_longrunning_requests{verb="WATCH", group, version, resource,
// subresource, scope, component} (open watches),
// apiserver_watch_events_total and apiserver_watch_events_sizes{group,
// version, resource} (per delivered event), apiserver_terminated_watchers_total{group,
// resource}, apiserver_storage_objects{resource}. /metrics also serves
// APF's apiserver_flowcontrol_* metrics (request_wait_duration_seconds,
// rejected_requests_total, current_inqueue_requests,
// dispatched_requests_total, ... with priority_level and flow_schema
// labels), which k8s.io/apiserver records only into component-base's
// process-wide legacyregistry: servers in one process share them.
//
// # Differences from kube-apiserver
//
// No admission, defaulting, schema validation or pruning beyond metadata;
// managedFields are kept per field manager and subresource as Update
// entries with field sets derived from the JSON (lists keyed by name or
// atomic) rather than from the type's schema; no server-side apply (415);
// generation is set for pods and custom resources only and bumped by
// changes outside metadata and status; a write that changes nothing is
// not written (same resourceVersion, no event); dryRun writes are refused
// (400); no graceful pod deletion (pods go at once); a continue token lists
// the current state after its key rather than a snapshot at its
// resourceVersion; resourceVersionMatch=Exact is served only if the
// resource did not change since; no PartialObjectMetadata or Table watches.
//
// # Performance
//
// Measured with the benchmarks in bench_test.go; see README.md in this
// directory for the figures and how to reproduce them.
package fakeapi
