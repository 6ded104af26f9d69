package fakeapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/apis/flowcontrol/bootstrap"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	authnuser "k8s.io/apiserver/pkg/authentication/user"
	apirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericfilters "k8s.io/apiserver/pkg/server/filters"
	"k8s.io/apiserver/pkg/storage"
	utilflowcontrol "k8s.io/apiserver/pkg/util/flowcontrol"
	fcmetrics "k8s.io/apiserver/pkg/util/flowcontrol/metrics"
	fcrequest "k8s.io/apiserver/pkg/util/flowcontrol/request"
	"k8s.io/client-go/informers"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/component-base/metrics/legacyregistry"
)

// apf is API Priority and Fairness as kube-apiserver v1.36 runs it: the
// real k8s.io/apiserver implementation (util/flowcontrol's config
// controller and fair queuing, server/filters' WithPriorityAndFairness
// filter, util/flowcontrol/request's work estimator), configured with the
// bootstrap FlowSchemas and PriorityLevelConfigurations
// (apis/flowcontrol/bootstrap, which kube-apiserver's
// priority-and-fairness-config-producer post-start hook writes into a new
// cluster). The configuration objects live in a client-go fake clientset
// that the controller's informers read, instead of in the served API.
type apf struct {
	limit int
	stats func(groupResource string) (storage.Stats, error)
	info  *apirequest.RequestInfoFactory
	// Set by run.
	ctl    utilflowcontrol.Interface
	filter http.Handler // WithPriorityAndFairness around serveDispatched
}

// apfRequestWaitLimit is how long a request may wait in its queue:
// kube-apiserver passes RequestTimeout/4 (60s/4) to WithPriorityAndFairness
// (k8s.io/apiserver pkg/server/config.go, DefaultBuildHandlerChain).
const apfRequestWaitLimit = 15 * time.Second

// newAPF prepares APF with a server concurrency limit of limit seats;
// stats gives the stored objects of a resource ("pods",
// "ciliumendpoints.cilium.io") for the LIST work estimate. Nothing runs
// until run.
func newAPF(limit int, stats func(groupResource string) (storage.Stats, error)) *apf {
	return &apf{
		limit: limit,
		stats: stats,
		info:  &apirequest.RequestInfoFactory{APIPrefixes: sets.NewString("api", "apis"), GrouplessAPIPrefixes: sets.NewString("api")},
	}
}

// run builds the controller and the filter, starts the informers and the
// controller until stop is called, and returns once the controller has
// taken in the bootstrap configuration (before that every request would
// fall into catch-all). stop waits for what run started.
func (a *apf) run(ctx context.Context) (stop func(), err error) {
	var objs []runtime.Object
	for _, pl := range append(append([]*flowcontrolv1.PriorityLevelConfiguration(nil), bootstrap.MandatoryPriorityLevelConfigurations...), bootstrap.SuggestedPriorityLevelConfigurations...) {
		objs = append(objs, pl.DeepCopy())
	}
	for _, fs := range append(append([]*flowcontrolv1.FlowSchema(nil), bootstrap.MandatoryFlowSchemas...), bootstrap.SuggestedFlowSchemas...) {
		objs = append(objs, fs.DeepCopy())
	}
	cs := kubefake.NewClientset(objs...)
	factory := informers.NewSharedInformerFactory(cs, 0)
	// The metrics the filter and the controller update are package-level
	// component-base metrics that only record once registered; they live
	// in legacyregistry, which gatherers serves next to the server's
	// registry.
	fcmetrics.Register()
	a.ctl = utilflowcontrol.New(factory, cs.FlowcontrolV1(), a.limit)
	estimator := fcrequest.NewWorkEstimator(a.stats, a.ctl.GetInterestedWatchCount, fcrequest.DefaultWorkEstimatorConfig(), a.ctl.GetMaxSeats)
	// kube-apiserver's long-running check (pkg/controlplane/apiserver
	// options: BasicLongRunningRequestCheck of watch/proxy verbs and
	// attach/exec/proxy/log/portforward subresources).
	longRunning := genericfilters.BasicLongRunningRequestCheck(sets.NewString("watch", "proxy"), sets.NewString("attach", "exec", "proxy", "log", "portforward"))
	a.filter = genericfilters.WithPriorityAndFairness(http.HandlerFunc(serveDispatched), longRunning, a.ctl, estimator, apfRequestWaitLimit)

	stopCh := make(chan struct{})
	factory.Start(stopCh)
	done := make(chan error, 1)
	go func() { done <- a.ctl.Run(stopCh) }()
	stop = func() {
		close(stopCh)
		<-done
		factory.Shutdown()
	}
	probe := &authnuser.DefaultInfo{Name: serviceaccount.MakeUsername("kube-system", "apf-ready"), Groups: append(serviceaccount.MakeGroupNames("kube-system"), authnuser.AllAuthenticated)}
	deadline := time.Now().Add(30 * time.Second)
	for a.classify(ctx, probe) != bootstrap.SuggestedPriorityLevelConfigurationWorkloadHigh.Name {
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return nil, errors.New("apf: the config controller did not take in the bootstrap configuration within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return stop, nil
}

// classify returns the priority level the controller puts a GET of u in.
func (a *apf) classify(ctx context.Context, u authnuser.Info) string {
	var pl string
	digest := utilflowcontrol.RequestDigest{
		RequestInfo: &apirequest.RequestInfo{IsResourceRequest: true, Verb: "get", APIPrefix: "api", APIVersion: "v1", Resource: "namespaces", Name: "default"},
		User:        u,
	}
	a.ctl.Handle(ctx, digest,
		func(_ *flowcontrolv1.FlowSchema, p *flowcontrolv1.PriorityLevelConfiguration, _ string) { pl = p.Name },
		func() fcrequest.WorkEstimate { return fcrequest.WorkEstimate{InitialSeats: 1} },
		func(bool) {}, func() {})
	return pl
}

type nextKey struct{}

// serve puts what WithPriorityAndFairness reads into r's context (the
// user, and RequestInfo from kube-apiserver's own resolver) and serves r
// through it; next serves r once APF dispatches it.
func (a *apf) serve(w http.ResponseWriter, r *http.Request, u *user, next http.HandlerFunc) {
	info, err := a.info.NewRequestInfo(r)
	if err != nil {
		writeError(w, fmt.Errorf("resolve request info: %w", err))
		return
	}
	ctx := apirequest.WithRequestInfo(r.Context(), info)
	ctx = apirequest.WithUser(ctx, &authnuser.DefaultInfo{Name: u.name, Groups: u.groups})
	ctx = context.WithValue(ctx, nextKey{}, next)
	a.filter.ServeHTTP(w, r.WithContext(ctx))
}

// serveDispatched is the handler inside the filter: it runs the request's
// own next handler, carried in the context so that one filter serves all.
func serveDispatched(w http.ResponseWriter, r *http.Request) {
	r.Context().Value(nextKey{}).(http.HandlerFunc)(w, r)
}

// apfMetricPrefix selects, from legacyregistry, the metrics APF records.
const apfMetricPrefix = "apiserver_flowcontrol_"

// gatherers serves the server's own registry plus APF's metrics, which
// k8s.io/apiserver records only into the process-wide legacyregistry
// (several servers in one process share them).
func gatherers(own prometheus.Gatherer) prometheus.Gatherer {
	return prometheus.Gatherers{own, prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := legacyregistry.DefaultGatherer.Gather()
		out := mfs[:0]
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), apfMetricPrefix) {
				out = append(out, mf)
			}
		}
		return out, err
	})}
}
