package agentcontract

import "net"

// Key layout of the ClusterMesh etcd a clustermesh-apiserver replica fills
// (cilium/cilium clustermesh-apiserver/clustermesh converters.go and
// testdata/*.txtar; pkg/kvstore ClusterConfigPrefix, SyncedPrefix,
// HeartbeatPath): node entries under cilium/state/nodes/v1/<cluster>/<node>
// (pkg/node/store NodeStorePrefix), one sync canary per mirrored prefix
// under cilium/synced/<cluster>/<prefix without trailing slash>
// (store.Synced), the cluster configuration under
// cilium/cluster-config/<cluster> (cmutils.EnforceClusterConfig) and the
// heartbeat key the replica rewrites every HeartbeatInterval
// (pkg/kvstore HeartbeatWriteInterval). Identities and ipcache entries use
// KVIDPrefix and KVIPPrefix, as in kvstore mode.
const (
	KVNodesPrefix         = "cilium/state/nodes/v1/"
	KVSyncedPrefix        = "cilium/synced/"
	KVClusterConfigPrefix = "cilium/cluster-config/"
	KVHeartbeatKey        = "cilium/.heartbeat"
)

// The canaried prefixes, as the canary keys name them: a replica writes
// KVSyncedPrefix + <cluster> + "/" + one of these once the resource's first
// list is mirrored. Identities and the ipcache canary on their base paths,
// not on the id/ and default/ prefixes the keys live under
// (WSSWithSyncedKeyOverride(identityCache.IdentitiesPath) and
// (ipcache.IPIdentitiesPath) in converters.go; canary keys
// cilium/synced/cluster3/cilium/state/{identities,ip,nodes}/v1 in
// ciliumidentitites.txtar, ciliumendpointslices.txtar, ciliumnodes.txtar).
const (
	KVSyncedIdentities = "cilium/state/identities/v1"
	KVSyncedIPCache    = "cilium/state/ip/v1"
	KVSyncedNodes      = "cilium/state/nodes/v1"
)

// SyncedKey is the canary key of one canaried prefix (KVSyncedIdentities,
// ...) of a cluster.
func SyncedKey(cluster, prefix string) string {
	return KVSyncedPrefix + cluster + "/" + prefix
}

// IPIdentityPair is the JSON value of an ipcache key as the newest
// identity.IPIdentityPair marshals it (cilium/cilium pkg/identity; field
// names and omissions as in clustermesh-apiserver/clustermesh/testdata/
// ciliumendpointslices.txtar, where an entry without pod UID, named ports or
// mask leaves those keys out). Older releases declared Mask without
// omitempty and had no K8sPodUID or K8sServiceAccount (pkg/identity at
// v1.14); kvstore-mode agents, which follow those, write their own form
// (agentsim) and read this one.
type IPIdentityPair struct {
	IP                net.IP      `json:"IP"`
	Mask              net.IPMask  `json:"Mask,omitempty"`
	HostIP            net.IP      `json:"HostIP"`
	ID                uint32      `json:"ID"`
	Key               uint8       `json:"Key"`
	Metadata          string      `json:"Metadata"`
	K8sNamespace      string      `json:"K8sNamespace,omitempty"`
	K8sPodName        string      `json:"K8sPodName,omitempty"`
	K8sPodUID         string      `json:"K8sPodUID,omitempty"`
	K8sServiceAccount string      `json:"K8sServiceAccount,omitempty"`
	NamedPorts        []NamedPort `json:"NamedPorts,omitempty"`
}

// NamedPort is one named port of an ipcache entry (identity.NamedPort).
type NamedPort struct {
	Name     string `json:"Name"`
	Port     uint16 `json:"Port"`
	Protocol string `json:"Protocol"`
}

// NodeValue is the JSON value of a node key: the fields of Cilium's
// nodeTypes.Node as k8s.ParseCiliumNode fills them from a CiliumNode, in
// the order clustermesh-apiserver writes them (testdata/ciliumnodes.txtar:
// every field present, nil CIDR lists as null, absent IPs as ""). Stampede
// fills what its CiliumNodes carry and leaves the rest zero.
type NodeValue struct {
	Name                    string            `json:"Name"`
	Cluster                 string            `json:"Cluster"`
	IPAddresses             []NodeAddress     `json:"IPAddresses"`
	IPv4AllocCIDR           *IPNet            `json:"IPv4AllocCIDR"`
	IPv4SecondaryAllocCIDRs []*IPNet          `json:"IPv4SecondaryAllocCIDRs"`
	IPv6AllocCIDR           *IPNet            `json:"IPv6AllocCIDR"`
	IPv6SecondaryAllocCIDRs []*IPNet          `json:"IPv6SecondaryAllocCIDRs"`
	IPv4HealthIP            net.IP            `json:"IPv4HealthIP"`
	IPv6HealthIP            net.IP            `json:"IPv6HealthIP"`
	IPv4IngressIP           net.IP            `json:"IPv4IngressIP"`
	IPv6IngressIP           net.IP            `json:"IPv6IngressIP"`
	ClusterID               uint32            `json:"ClusterID"`
	Source                  string            `json:"Source"`
	EncryptionKey           uint8             `json:"EncryptionKey"`
	Labels                  map[string]string `json:"Labels"`
	Annotations             map[string]string `json:"Annotations"`
	WireguardPubKey         string            `json:"WireguardPubKey"`
	BootID                  string            `json:"BootID"`
}

// NodeSourceCustomResource is NodeValue.Source for a node read from a
// CiliumNode (pkg/source CustomResource).
const NodeSourceCustomResource = "custom-resource"

// NodeAddress is one address of a node (nodeTypes.Address): Type is
// InternalIP, ExternalIP or CiliumInternalIP.
type NodeAddress struct {
	Type string `json:"Type"`
	IP   net.IP `json:"IP"`
}

// IPNet is a CIDR as pkg/cidr.CIDR marshals it: the net.IPNet fields, the
// mask base64 encoded.
type IPNet struct {
	IP   net.IP     `json:"IP"`
	Mask net.IPMask `json:"Mask"`
}

// ClusterConfig is the JSON value of the cluster configuration key
// (pkg/clustermesh/types CiliumClusterConfig; testdata/clusterconfig.txtar).
type ClusterConfig struct {
	ID           uint32                    `json:"id,omitempty"`
	Capabilities ClusterConfigCapabilities `json:"capabilities,omitempty"`
}

// ClusterConfigCapabilities are what the replica announces: sync canaries
// (readers wait for them) and the cluster ID range.
type ClusterConfigCapabilities struct {
	SyncedCanaries        bool   `json:"syncedCanaries,omitempty"`
	MaxConnectedClusters  uint32 `json:"maxConnectedClusters,omitempty"`
	ServiceExportsEnabled *bool  `json:"serviceExportsEnabled,omitempty"`
}
