package agentcontract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// StatusPath is where an agent shard serves its agents' reports: GET
// answers a JSON array with one Status per agent.
const StatusPath = "/agents"

// Status is the part of one agent's report that the harness reads.
type Status struct {
	// Node is the node the agent runs on.
	Node string `json:"node"`
	// IPCacheDigest and PolicyDigest summarise the agent's ipcache and
	// the effective policy of its local endpoints in the format of
	// internal/truth's Digest.String, which the harness compares with the
	// ground truth's.
	IPCacheDigest string `json:"ipcacheDigest"`
	PolicyDigest  string `json:"policyDigest"`
	// LastChange is when the ipcache or policy state last changed.
	LastChange time.Time `json:"lastChange"`
	// Work is what the agent received, holds and did (absent from agents
	// that do not count it).
	Work *Work `json:"work,omitempty"`
}

// PolicyOverflowMarker follows an agent's policy digest, with the count,
// when some of its endpoints' policies did not fit the policy map: such a
// digest never equals the ground truth's.
const PolicyOverflowMarker = " overflow:"

// Key layout of Cilium's kvstore identity allocator
// (pkg/kvstore/allocator: <base>/id/<ID> master keys, <base>/value/<key>/<node>
// per-node references, <base>/locks/<key> allocation locks) and of the
// kvstore ipcache (pkg/ipcache kvstore: cilium/state/ip/v1/<cluster-scope>/<IP>).
const (
	KVIdentitiesBase = "cilium/state/identities/v1/"
	KVIDPrefix       = KVIdentitiesBase + "id/"
	KVValuePrefix    = KVIdentitiesBase + "value/"
	KVLockPrefix     = KVIdentitiesBase + "locks/"
	KVIPPrefix       = "cilium/state/ip/v1/default/"
)

// DecodeStatuses decodes a StatusPath answer: a JSON array of reports, or
// an object with an "agents" array. Fields other than Status's are
// ignored.
func DecodeStatuses(body []byte) ([]Status, error) {
	body = bytes.TrimSpace(body)
	var list []Status
	if len(body) > 0 && body[0] == '[' {
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, fmt.Errorf("decode agents: %w", err)
		}
		return list, nil
	}
	var obj struct {
		Agents []Status `json:"agents"`
	}
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, fmt.Errorf("decode agents: %w", err)
	}
	return obj.Agents, nil
}
