package fill

// RefreshDepth returns the background refreshes running and their bound
// (Config.RefreshWorkers); a refresh beyond it is shed as refresh_pool.
func (g *Group) RefreshDepth() (running, bound int) {
	return len(g.refresh), cap(g.refresh)
}
