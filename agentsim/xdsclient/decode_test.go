package xdsclient

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/stampede-sim/stampede/internal/xdsapi"
)

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestDecodeRejects checks that every malformed resource is refused with an
// error naming what is wrong.
func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		typ     string
		resName string
		msg     proto.Message
		body    *anypb.Any
		wantErr string
	}{
		{"identity name not a number", xdsapi.TypeIdentity, "abc", &xdsapi.Identity{Id: 256}, nil, `content names it "256"`},
		{"identity zero", xdsapi.TypeIdentity, "0", &xdsapi.Identity{Id: 0}, nil, "non-zero identity"},
		{"identity labels unsorted", xdsapi.TypeIdentity, "256", &xdsapi.Identity{Id: 256, Labels: []string{"k8s:b=1", "k8s:a=1"}}, nil, "not sorted"},
		{"identity label without source", xdsapi.TypeIdentity, "256", &xdsapi.Identity{Id: 256, Labels: []string{"a=1"}}, nil, "labels[0]"},
		{"hosts bad address", xdsapi.TypeIdentityHosts, "256", &xdsapi.IdentityHosts{Policy: 256, HostAddresses: []string{"10.0.0.1", "x"}}, nil, "host_addresses[1]"},
		{"endpoint bad ip", xdsapi.TypeEndpoint, "ns/p", &xdsapi.Endpoint{Namespace: "ns", Name: "p", Ip: "300.1.1.1", Identity: 256}, nil, "ip"},
		{"endpoint no identity", xdsapi.TypeEndpoint, "ns/p", &xdsapi.Endpoint{Namespace: "ns", Name: "p", Ip: "10.0.0.1"}, nil, "identity is 0"},
		{"policy bad operator", xdsapi.TypePolicy, "ns/p", &xdsapi.Policy{Namespace: "ns", Name: "p", Rules: []*xdsapi.Rule{{Subject: &xdsapi.Selector{Requirements: []*xdsapi.Requirement{{Key: "app", Op: "Near"}}}}}}, nil, `rules[0].subject: requirements[0]: unknown operator "Near"`},
		{"policy port out of range", xdsapi.TypePolicy, "ns/p", &xdsapi.Policy{Namespace: "ns", Name: "p", Rules: []*xdsapi.Rule{{Ingress: []*xdsapi.Ingress{{Ports: []*xdsapi.Port{{Port: 70000, Proto: 6}}}}}}}, nil, "rules[0].ingress[0].ports[0]"},
		{"policy name without namespace", xdsapi.TypePolicy, "p", &xdsapi.Policy{Name: "p"}, nil, `content names it "/p"`},
		{"wrong body type", xdsapi.TypeIdentity, "256", nil, nil, "body has type"},
		{"no body", xdsapi.TypeIdentity, "256", nil, &anypb.Any{}, "body has type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			if body == nil && tc.msg != nil {
				body = mustAny(t, tc.msg)
			}
			if body == nil {
				body = mustAny(t, &xdsapi.Endpoint{})
			}
			_, err := decode(tc.typ, tc.resName, body)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("decode = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestDecodeAccepts checks a valid resource of every type.
func TestDecodeAccepts(t *testing.T) {
	for _, tc := range []struct {
		typ, name string
		msg       proto.Message
	}{
		{xdsapi.TypeIdentity, "256", &xdsapi.Identity{Id: 256, Labels: []string{"k8s:a=1", "k8s:b=2"}}},
		{xdsapi.TypeIdentityHosts, "256", &xdsapi.IdentityHosts{Policy: 256, HostAddresses: []string{"10.0.0.1"}}},
		{xdsapi.TypeEndpoint, "ns/p", &xdsapi.Endpoint{Namespace: "ns", Name: "p", Ip: "10.0.0.1", Identity: 256, Node: "n"}},
		{xdsapi.TypePolicy, "ns/p", &xdsapi.Policy{Namespace: "ns", Name: "p", Rules: []*xdsapi.Rule{{
			Subject: &xdsapi.Selector{},
			Ingress: []*xdsapi.Ingress{{From: []*xdsapi.Selector{{Requirements: []*xdsapi.Requirement{{Source: "k8s", Key: "env", Op: "In", Values: []string{"prod"}}}}}, Ports: []*xdsapi.Port{{Port: 8080, Proto: 6}}}},
		}}}},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			d, err := decode(tc.typ, tc.name, mustAny(t, tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			if d.name != tc.name {
				t.Errorf("name = %q, want %q", d.name, tc.name)
			}
			if tc.typ == xdsapi.TypePolicy && (len(d.rules) != 1 || d.rules[0].Ingress[0].Ports[0].Port != 8080) {
				t.Errorf("rules = %+v", d.rules)
			}
		})
	}
}
