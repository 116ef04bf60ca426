package audit

import (
	"fmt"
	"testing"
)

// TestOwnerSplitsAndMovesLittle: every namespace has one owner among the members; the split is
// even enough; a member joining takes namespaces from the others but moves none between them.
func TestOwnerSplitsAndMovesLittle(t *testing.T) {
	two, three := []string{"a", "b"}, []string{"a", "b", "c"}
	count := map[string]int{}
	moved := 0
	for i := range 3000 {
		ns := fmt.Sprintf("ns-%d", i)
		before, after := owner(two, ns), owner(three, ns)
		count[before]++
		if before != after && after != "c" {
			t.Fatalf("%s moved from %s to %s when c joined", ns, before, after)
		}
		if before != after {
			moved++
		}
	}
	if count["a"] < 1300 || count["b"] < 1300 {
		t.Errorf("split of 3000 namespaces between two members: %v", count)
	}
	if moved < 800 || moved > 1200 {
		t.Errorf("c took %d of 3000 namespaces, want about a third", moved)
	}
}
