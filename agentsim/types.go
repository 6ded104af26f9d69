package agentsim

import "github.com/stampede-sim/stampede/internal/identity"

// Slim types: received objects are decoded straight into these, keeping
// only the fields an agent uses, as Cilium's slim k8s types do. Unknown
// fields are skipped by the decoder and never stored.

// slimMeta is the metadata an agent keeps.
type slimMeta struct {
	Name            string            `json:"name"`
	Namespace       string            `json:"namespace,omitempty"`
	UID             string            `json:"uid,omitempty"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
}

// listMeta is a list's metadata.
type listMeta struct {
	ResourceVersion string `json:"resourceVersion"`
	Continue        string `json:"continue,omitempty"`
}

// watchStatus catches the fields of a metav1.Status sent as the object of
// an ERROR watch frame; every slim type embeds it so that a frame decodes in
// one pass into the slim type whatever its type is.
type watchStatus struct {
	Code    int    `json:"code,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

func (w *watchStatus) apiStatus() watchStatus { return *w }

// slimObject is what the watch loop needs of every slim type.
type slimObject interface {
	resourceVersion() string
	apiStatus() watchStatus
	// objectName is the object's namespace (empty if cluster-scoped)
	// and name.
	objectName() (namespace, name string)
}

// slimPod is a Pod reduced to what identity and endpoints need.
type slimPod struct {
	watchStatus
	Metadata slimMeta `json:"metadata"`
	Spec     struct {
		NodeName           string `json:"nodeName"`
		ServiceAccountName string `json:"serviceAccountName"`
	} `json:"spec"`
	Status struct {
		PodIP string `json:"podIP"`
	} `json:"status"`
}

// slimNamespace is a Namespace: its name and labels.
type slimNamespace struct {
	watchStatus
	Metadata slimMeta `json:"metadata"`
}

// slimNode is a Node: its name and addresses.
type slimNode struct {
	watchStatus
	Metadata struct {
		Name            string `json:"name"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Status struct {
		Addresses []struct {
			Type    string `json:"type"`
			Address string `json:"address"`
		} `json:"addresses"`
	} `json:"status"`
}

// slimCID is a CiliumIdentity: its numeric name and security labels.
type slimCID struct {
	watchStatus
	Metadata struct {
		Name            string `json:"name"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	SecurityLabels map[string]string `json:"security-labels"`

	// Derived once after decoding (prepare): the numeric identity and
	// the labels with their key, or why they are unusable.
	id       identity.ID
	idErr    error
	labels   identity.Labels
	key      string
	labelErr error
}

// slimCEP is a CiliumEndpoint: its name, identity and addresses.
type slimCEP struct {
	watchStatus
	Metadata struct {
		Name            string `json:"name"`
		Namespace       string `json:"namespace"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Status struct {
		Identity struct {
			ID int64 `json:"id"`
		} `json:"identity"`
		Networking struct {
			Addressing []struct {
				IPv4 string `json:"ipv4"`
			} `json:"addressing"`
			Node string `json:"node"`
		} `json:"networking"`
	} `json:"status"`
}

// slimCES is a CiliumEndpointSlice: the core endpoints it carries.
type slimCES struct {
	watchStatus
	Metadata struct {
		Name            string `json:"name"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Namespace string `json:"namespace"`
	Endpoints []struct {
		Name       string `json:"name"`
		ID         int64  `json:"id"`
		Networking struct {
			Addressing []struct {
				IPv4 string `json:"ipv4"`
			} `json:"addressing"`
			Node string `json:"node"`
		} `json:"networking"`
	} `json:"endpoints"`

	// entries are the endpoints as the ipcache takes them, derived once
	// after decoding (prepare), which then drops Endpoints.
	entries []sliceEntry
}

// statusObj is a metav1.Status, as sent in ERROR watch frames and error
// responses.
type statusObj struct {
	Code    int    `json:"code"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func (o *slimPod) resourceVersion() string       { return o.Metadata.ResourceVersion }
func (o *slimNamespace) resourceVersion() string { return o.Metadata.ResourceVersion }
func (o *slimNode) resourceVersion() string      { return o.Metadata.ResourceVersion }
func (o *slimCID) resourceVersion() string       { return o.Metadata.ResourceVersion }
func (o *slimCEP) resourceVersion() string       { return o.Metadata.ResourceVersion }
func (o *slimCES) resourceVersion() string       { return o.Metadata.ResourceVersion }

func (o *slimPod) objectName() (string, string)       { return o.Metadata.Namespace, o.Metadata.Name }
func (o *slimNamespace) objectName() (string, string) { return "", o.Metadata.Name }
func (o *slimNode) objectName() (string, string)      { return "", o.Metadata.Name }
func (o *slimCID) objectName() (string, string)       { return "", o.Metadata.Name }
func (o *slimCEP) objectName() (string, string)       { return o.Metadata.Namespace, o.Metadata.Name }
func (o *slimCES) objectName() (string, string)       { return "", o.Metadata.Name }
