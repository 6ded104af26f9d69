package agentcontract

import (
	"encoding/json"
	"net"
	"testing"
)

// The expected texts are the values clustermesh-apiserver writes for the
// same inputs (cilium/cilium clustermesh-apiserver/clustermesh/testdata:
// ciliumendpointslices.txtar, ciliumnodes.txtar, clusterconfig.txtar),
// compacted: field names, order and omissions must match.
func TestMeshValuesMatchCilium(t *testing.T) {
	f := false
	_, v4, _ := net.ParseCIDR("10.244.1.0/24")
	_, v6, _ := net.ParseCIDR("fd00:10:244:1::/64")
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"ipcache entry with pod UID", IPIdentityPair{
			IP: net.ParseIP("10.244.2.74").To4(), HostIP: net.ParseIP("172.18.0.2").To4(), ID: 199475, Key: 5,
			K8sNamespace: "qux", K8sPodName: "foo-002", K8sPodUID: "ces-pod-uid", K8sServiceAccount: "default",
		}, `{"IP":"10.244.2.74","HostIP":"172.18.0.2","ID":199475,"Key":5,"Metadata":"","K8sNamespace":"qux","K8sPodName":"foo-002","K8sPodUID":"ces-pod-uid","K8sServiceAccount":"default"}`},
		{"ipcache entry with named ports", IPIdentityPair{
			IP: net.ParseIP("10.244.2.78").To4(), HostIP: net.ParseIP("172.18.0.2").To4(), ID: 199494,
			K8sNamespace: "fred", K8sPodName: "foo-004", K8sServiceAccount: "default",
			NamedPorts: []NamedPort{{"http", 8080, "TCP"}, {"dns", 53, "UDP"}},
		}, `{"IP":"10.244.2.78","HostIP":"172.18.0.2","ID":199494,"Key":0,"Metadata":"","K8sNamespace":"fred","K8sPodName":"foo-004","K8sServiceAccount":"default","NamedPorts":[{"Name":"http","Port":8080,"Protocol":"TCP"},{"Name":"dns","Port":53,"Protocol":"UDP"}]}`},
		{"node", NodeValue{
			Name: "test-node-2", Cluster: "cluster3",
			IPAddresses: []NodeAddress{
				{"InternalIP", net.ParseIP("172.18.0.3").To4()}, {"InternalIP", net.ParseIP("fc00:c111::3")},
				{"CiliumInternalIP", net.ParseIP("10.244.1.130").To4()}, {"CiliumInternalIP", net.ParseIP("fd00:10:244:1::9089")},
			},
			IPv4AllocCIDR: &IPNet{v4.IP, v4.Mask}, IPv6AllocCIDR: &IPNet{v6.IP, v6.Mask},
			IPv4HealthIP: net.ParseIP("10.244.1.153").To4(), IPv6HealthIP: net.ParseIP("fd00:10:244:1::835d"),
			ClusterID: 3, Source: NodeSourceCustomResource, EncryptionKey: 7,
			Labels: map[string]string{"kubernetes.io/hostname": "test-node-2"}, BootID: "c1d2cda2-aca0-4033-abca-3843298860b9",
		}, `{"Name":"test-node-2","Cluster":"cluster3","IPAddresses":[{"Type":"InternalIP","IP":"172.18.0.3"},{"Type":"InternalIP","IP":"fc00:c111::3"},{"Type":"CiliumInternalIP","IP":"10.244.1.130"},{"Type":"CiliumInternalIP","IP":"fd00:10:244:1::9089"}],` +
			`"IPv4AllocCIDR":{"IP":"10.244.1.0","Mask":"////AA=="},"IPv4SecondaryAllocCIDRs":null,"IPv6AllocCIDR":{"IP":"fd00:10:244:1::","Mask":"//////////8AAAAAAAAAAA=="},"IPv6SecondaryAllocCIDRs":null,` +
			`"IPv4HealthIP":"10.244.1.153","IPv6HealthIP":"fd00:10:244:1::835d","IPv4IngressIP":"","IPv6IngressIP":"","ClusterID":3,"Source":"custom-resource","EncryptionKey":7,` +
			`"Labels":{"kubernetes.io/hostname":"test-node-2"},"Annotations":null,"WireguardPubKey":"","BootID":"c1d2cda2-aca0-4033-abca-3843298860b9"}`},
		{"cluster config", ClusterConfig{ID: 3, Capabilities: ClusterConfigCapabilities{SyncedCanaries: true, MaxConnectedClusters: 255, ServiceExportsEnabled: &f}},
			`{"id":3,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255,"serviceExportsEnabled":false}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("JSON\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestSyncedKey(t *testing.T) {
	// ciliumnodes.txtar: cilium/synced/cluster3/cilium/state/nodes/v1.
	if got, want := SyncedKey("cluster3", KVSyncedNodes), "cilium/synced/cluster3/cilium/state/nodes/v1"; got != want {
		t.Errorf("SyncedKey = %q, want %q", got, want)
	}
}
