package xds_test

import (
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stampede-sim/stampede/controlplane/xds"
	"github.com/stampede-sim/stampede/internal/xdsapi"
)

// clusterType is a type URL every Envoy asks for and this server does not
// serve.
const clusterType = "type.googleapis.com/envoy.config.cluster.v3.Cluster"

// TestUnknownTypeKeepsStream subscribes with a plain go-control-plane ADS
// client to a type the server does not serve and then to one it serves:
// the served type is answered on the same stream and the unknown one is
// counted. Before, the router's error for the unknown type ended the whole
// stream, served types included.
func TestUnknownTypeKeepsStream(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delta bool
	}{{"sotw", false}, {"delta", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			reg := prometheus.NewRegistry()
			srv, err := xds.New(xds.Config{Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			c := &xds.Changes{}
			c.Set(xdsapi.TypeIdentity, "", "256", &xdsapi.Identity{Id: 256, Labels: []string{"k8s:app=a"}})
			if _, err := srv.Apply(c); err != nil {
				t.Fatal(err)
			}
			addr, stop := serve(ctx, t, srv)
			defer stop()
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ads := discovery.NewAggregatedDiscoveryServiceClient(conn)
			node := &core.Node{Id: "node-0000"}

			// first subscribes to the unserved type, then to identities, on
			// one stream, and returns the first response's type and size.
			first := func() (string, int, error) {
				if tc.delta {
					st, err := ads.DeltaAggregatedResources(ctx)
					if err != nil {
						return "", 0, err
					}
					for _, typ := range []string{clusterType, xdsapi.TypeIdentity} {
						if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: typ}); err != nil {
							return "", 0, err
						}
					}
					resp, err := st.Recv()
					return resp.GetTypeUrl(), len(resp.GetResources()), err
				}
				st, err := ads.StreamAggregatedResources(ctx)
				if err != nil {
					return "", 0, err
				}
				for _, typ := range []string{clusterType, xdsapi.TypeIdentity} {
					if err := st.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: typ}); err != nil {
						return "", 0, err
					}
				}
				resp, err := st.Recv()
				return resp.GetTypeUrl(), len(resp.GetResources()), err
			}
			got, n, err := first()
			if err != nil {
				t.Fatalf("the stream ended after a subscription to %s: %v", clusterType, err)
			}
			if n != 1 {
				t.Errorf("identities in the response = %d, want 1", n)
			}
			if got != xdsapi.TypeIdentity {
				t.Errorf("first response is of type %q, want %q", got, xdsapi.TypeIdentity)
			}
			if n := counterValue(t, reg, "stampede_xds_unknown_type_requests_total", clusterType); n != 1 {
				t.Errorf("unknown-type subscriptions counted for %s = %g, want 1", clusterType, n)
			}
		})
	}
}
