package cliflag

import (
	"errors"
	"strconv"
	"strings"
)

// ByteSize is a flag of bytes with an optional unit: 4096, 64MiB, 1GiB,
// 8MB. It prints in the largest binary unit that divides it exactly, so a
// default reads as 256MiB, not 268435456.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}

func (b *ByteSize) String() string {
	n := int64(*b)
	for _, u := range byteUnits[:3] {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// Set parses s.
func (b *ByteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return errors.New("want a byte size such as 4096, 64MiB or 1GiB")
	}
	*b = ByteSize(n * mult)
	return nil
}
