package capacity

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// NoMax is a tenant Max that sets no limit but the eligible nodes.
const NoMax = math.MaxInt

// DefaultSchedule is the growth schedule: double quickly, then linear
// (beyond the last size, sizes go on by the last step).
var defaultSchedule = []int{3, 6, 9, 12, 18, 24, 30, 39, 48, 57}

// Config holds the capacity policy's thresholds and velocity checks. Start
// from DefaultConfig: a zero field means zero (no wait, no budget), never
// "the default".
type Config struct {
	// CPUHot and MemHot make a node hot: CPU in use at or over CPUHot of
	// its limit, or memory at or over MemHot of its limit (a limit of 0,
	// unknown, is not judged). Defaults 0.8 and 0.7.
	CPUHot, MemHot float64
	// CPUCool and MemCool make a node cool: under both. A tenant whose
	// reporting nodes are all cool and shed nothing is cold. They must be
	// below the hot thresholds (the band between is the hysteresis).
	// Defaults 0.5 and 0.6.
	CPUCool, MemCool float64
	// ShrinkCPU is the most CPU (of its limit) any node of a tenant may be
	// predicted to use after the tenant gives a step back (its share of
	// the node's load grows by the ratio of the sizes): a shrink that
	// would make a node hot again is not taken. Between CPUCool and
	// CPUHot. Default 0.6.
	ShrinkCPU float64
	// ShedFalling: a node that sheds requests is hot unless its shed rate
	// fell under this fraction of the rate in its previous report (rising
	// or holding shedding is heat; dying shedding is not). Default 0.9.
	ShedFalling float64
	// MinShare is the least share of a hot node's requests a tenant must
	// have to be asked for: a tenant with less does not heat the node, and
	// growing it would not cool it. Default 0.1.
	MinShare float64

	// Schedule lists the sizes a growing tenant steps through, ascending:
	// from size K it grows to the first size above K, then on by the last
	// step beyond the end; it shrinks to the last size below K (never below
	// its min). Default 3, 6, 9, 12, 18, 24, 30, 39, 48, 57.
	Schedule []int

	// NodeAskInterval is the least time between two asks for capacity by
	// one hot node. Default 1s.
	NodeAskInterval time.Duration
	// AskTTL is how long an ask stands while its node stays hot and the
	// tenant cannot grow yet. Default 3s.
	AskTTL time.Duration
	// GrowInterval is the least time between two growth steps of one
	// tenant (the seed's example uses 10 minutes; flash crowds need
	// seconds). Default 3s.
	GrowInterval time.Duration
	// Cooldown is the least time between a step in one direction and a
	// step in the other for one tenant. Default 10s.
	Cooldown time.Duration
	// ShrinkHold is how long a tenant must stay cold before it gives a
	// step back. Default 30s.
	ShrinkHold time.Duration
	// ShrinkInterval is the least time between two shrink steps of one
	// tenant. Default 10s.
	ShrinkInterval time.Duration

	// BudgetPerSecond and BudgetBurst are the cluster-wide token bucket of
	// node-set changes (one token per node added or given back; growth
	// is served first). Defaults 2/s and 20. A budget of 0/s allows only
	// the burst, once.
	BudgetPerSecond float64
	BudgetBurst     int

	// BackoffBase and BackoffMax pace a tenant after failed changes
	// (reported with Failed): no step for Base·2^(failures-1), capped at
	// Max. Defaults 2s and 1m.
	BackoffBase, BackoffMax time.Duration

	// AlarmFraction raises the near-max alarm when a tenant's size reaches
	// this fraction of its max. Default 0.5.
	AlarmFraction float64

	// ReportMaxAge: older reports are ignored. Default 3s.
	ReportMaxAge time.Duration

	// Seed seeds the power-of-two-choices draws, so runs repeat.
	Seed uint64
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		CPUHot: 0.8, MemHot: 0.7, CPUCool: 0.5, MemCool: 0.6, ShrinkCPU: 0.6, ShedFalling: 0.9, MinShare: 0.1,
		Schedule:        slices.Clone(defaultSchedule),
		NodeAskInterval: time.Second, AskTTL: 3 * time.Second,
		GrowInterval: 3 * time.Second, Cooldown: 10 * time.Second,
		ShrinkHold: 30 * time.Second, ShrinkInterval: 10 * time.Second,
		BudgetPerSecond: 2, BudgetBurst: 20,
		BackoffBase: 2 * time.Second, BackoffMax: time.Minute,
		AlarmFraction: 0.5,
		ReportMaxAge:  3 * time.Second,
	}
}

// Validate checks each field and the relations between them.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !(c.CPUCool > 0 && c.CPUCool < c.CPUHot) {
		bad("capacity: want 0 < cpu cool (%g) < cpu hot (%g)", c.CPUCool, c.CPUHot)
	}
	if !(c.MemCool > 0 && c.MemCool < c.MemHot) {
		bad("capacity: want 0 < memory cool (%g) < memory hot (%g)", c.MemCool, c.MemHot)
	}
	if !(c.ShrinkCPU >= c.CPUCool && c.ShrinkCPU < c.CPUHot) {
		bad("capacity: want cpu cool (%g) <= shrink cpu (%g) < cpu hot (%g)", c.CPUCool, c.ShrinkCPU, c.CPUHot)
	}
	if !(c.ShedFalling >= 0 && c.ShedFalling <= 1) {
		bad("capacity: shed falling %g: want 0..1", c.ShedFalling)
	}
	if !(c.MinShare >= 0 && c.MinShare < 1) {
		bad("capacity: min share %g: want 0 <= share < 1", c.MinShare)
	}
	if len(c.Schedule) == 0 || c.Schedule[0] < 1 {
		bad("capacity: schedule %v: want ascending sizes from at least 1", c.Schedule)
	}
	for i := 1; i < len(c.Schedule); i++ {
		if c.Schedule[i] <= c.Schedule[i-1] {
			bad("capacity: schedule %v: not ascending at %d", c.Schedule, c.Schedule[i])
			break
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"node ask interval", c.NodeAskInterval}, {"ask ttl", c.AskTTL}, {"grow interval", c.GrowInterval},
		{"cooldown", c.Cooldown}, {"shrink hold", c.ShrinkHold}, {"shrink interval", c.ShrinkInterval},
		{"backoff base", c.BackoffBase}, {"backoff max", c.BackoffMax},
	} {
		if d.v < 0 {
			bad("capacity: %s %v: must not be negative", d.name, d.v)
		}
	}
	if c.ReportMaxAge <= 0 {
		bad("capacity: report max age %v: must be positive", c.ReportMaxAge)
	}
	if c.BackoffMax < c.BackoffBase {
		bad("capacity: backoff max %v below base %v", c.BackoffMax, c.BackoffBase)
	}
	if c.BudgetPerSecond < 0 || math.IsNaN(c.BudgetPerSecond) || c.BudgetBurst < 0 {
		bad("capacity: budget %g/s burst %d: must not be negative", c.BudgetPerSecond, c.BudgetBurst)
	}
	if !(c.AlarmFraction > 0 && c.AlarmFraction <= 1) {
		bad("capacity: alarm fraction %g: want (0, 1]", c.AlarmFraction)
	}
	return errors.Join(errs...)
}

// next is the schedule's size after size.
func (c *Config) next(size int) int {
	for _, s := range c.Schedule {
		if s > size {
			return s
		}
	}
	last, step := c.lastStep()
	return last + ((size-last)/step+1)*step
}

// prev is the schedule's size before size (at least 1).
func (c *Config) prev(size int) int {
	last, step := c.lastStep()
	if size > last {
		return last + (size-last-1)/step*step
	}
	p := 1
	for _, s := range c.Schedule {
		if s >= size {
			break
		}
		p = s
	}
	return p
}

// lastStep is the schedule's last size and the step it goes on by.
func (c *Config) lastStep() (last, step int) {
	n := len(c.Schedule)
	last = c.Schedule[n-1]
	step = last
	if n > 1 {
		step = last - c.Schedule[n-2]
	}
	return last, step
}
