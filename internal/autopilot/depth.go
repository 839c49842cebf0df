package autopilot

// ReportDepth returns the heat reports the leader's table holds (one per
// node) and its bound (LeaderConfig.MaxReports); a report from a new node
// beyond it is dropped.
func (l *Leader) ReportDepth() (held, bound int) {
	l.repMu.Lock()
	defer l.repMu.Unlock()
	return len(l.reports), l.maxReports
}

// CopyDepth returns the scale-out copies in flight and their bound
// (ActuatorConfig.MaxCopies); a scale-out beyond it is shed.
func (a *Actuator) CopyDepth() (inFlight, bound int) {
	return len(a.copies), cap(a.copies)
}
