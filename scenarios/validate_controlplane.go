package scenarios

import "strings"

// validateControlPlaneKnobs checks the operator and xDS knobs that follow
// a Cilium release: the CES slice mode the release has, the identity GC's
// deletion rate, the operator identity queue's retries, the kvstore
// periodic sync and the xDS flush interval.
func (s *Scenario) validateControlPlaneKnobs(l *errs) {
	cp := s.ControlPlane
	switch m := cp.CES.SliceMode; {
	case m != SliceModeIdentity && m != SliceModeFCFS:
		l.add("controlPlane.ces.sliceMode", "unknown slice mode %q (want %s or %s)", m, SliceModeIdentity, SliceModeFCFS)
	default:
		if r := s.Release(); r != nil && !r.SupportsSliceMode(m) {
			l.add("controlPlane.ces.sliceMode", "slice mode %q does not exist in Cilium %s (it has %s; identity slicing was removed in 1.18 by cilium/cilium#37211)",
				m, r.Version, strings.Join(r.CESSliceModes, ", "))
		}
	}
	if r := s.Release(); r != nil && r.CESWriteMax != nil {
		if q := cp.CES.WriteQPS; q > r.CESWriteMax.QPS {
			l.add("controlPlane.ces.writeQPS", "%g is above the %g qps Cilium %s's operator caps the CES write rate at (CESWriteQPSLimitMax)", q, r.CESWriteMax.QPS, r.Version)
		}
		if b := cp.CES.WriteBurst; b > r.CESWriteMax.Burst {
			l.add("controlPlane.ces.writeBurst", "%d is above the burst of %d Cilium %s's operator caps the CES write rate at (CESWriteQPSBurstMax)", b, r.CESWriteMax.Burst, r.Version)
		}
	}
	positive(l, "controlPlane.identityGC.rateInterval", cp.IdentityGC.RateInterval)
	if cp.IdentityGC.RateLimit < 1 {
		l.add("controlPlane.identityGC.rateLimit", "must be >= 1, got %d", cp.IdentityGC.RateLimit)
	}
	oi := cp.OperatorIdentity
	positive(l, "controlPlane.operatorIdentity.retryBaseDelay", oi.RetryBaseDelay)
	if oi.RetryMaxDelay.Duration < oi.RetryBaseDelay.Duration {
		l.add("controlPlane.operatorIdentity.retryMaxDelay", "must be >= retryBaseDelay (%s), got %s", oi.RetryBaseDelay, oi.RetryMaxDelay)
	}
	switch {
	case oi.MaxRetries == nil:
		l.add("controlPlane.operatorIdentity.maxRetries", "must be set")
	case *oi.MaxRetries < 0:
		l.add("controlPlane.operatorIdentity.maxRetries", "must be >= 0, got %d", *oi.MaxRetries)
	}
	positive(l, "controlPlane.xds.flushInterval", cp.XDS.FlushInterval)
	s.validateMeshKnobs(l)
}

// validateMeshKnobs checks controlPlane.mesh. The knobs are checked in
// every scenario (they have defaults) but used only by modes with the
// mesh read path.
func (s *Scenario) validateMeshKnobs(l *errs) {
	m := s.ControlPlane.Mesh
	if m.Replicas < 1 || m.Replicas > 16 {
		l.add("controlPlane.mesh.replicas", "must be in [1, 16], got %d (each replica is a mirror and an etcd on this machine)", m.Replicas)
	}
	switch m.StorageMedium {
	case StorageDisk, StorageMemory:
	default:
		l.add("controlPlane.mesh.storageMedium", "must be %q or %q (Helm clustermesh.apiserver.etcd.storageMedium), got %q", StorageDisk, StorageMemory, m.StorageMedium)
	}
	if m.APIServerFallback == nil {
		l.add("controlPlane.mesh.apiServerFallback", "must be set")
	}
}
