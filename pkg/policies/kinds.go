package policies

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"k8s.io/client-go/kubernetes/scheme"
)

// builtinKinds are the kinds of the built-in API groups, by group ("" is core), as client-go
// knows them: what a match.kinds entry of a built-in group can name.
var builtinKinds = sync.OnceValue(func() map[string][]string {
	byGroup := map[string][]string{}
	for gvk := range scheme.Scheme.AllKnownTypes() {
		if gvk.Version == "__internal" || strings.HasSuffix(gvk.Kind, "List") || strings.HasSuffix(gvk.Kind, "Options") ||
			slices.Contains([]string{"WatchEvent", "Status", "APIGroup", "APIGroupList", "APIResourceList", "APIVersions", "InternalEvent"}, gvk.Kind) {
			continue
		}
		if !slices.Contains(byGroup[gvk.Group], gvk.Kind) {
			byGroup[gvk.Group] = append(byGroup[gvk.Group], gvk.Kind)
		}
	}
	for g := range byGroup {
		slices.Sort(byGroup[g])
	}
	return byGroup
})

// checkKind says what is wrong with a match.kinds entry. A kind its built-in group does not have
// never matches: an error. A kind of any group that no built-in group has may be a custom
// resource's: a warning, as the compiler cannot know the cluster's CRDs.
func checkKind(k KindSelector) (errMsg, warning string) {
	if k.Any {
		return "", ""
	}
	groups := builtinKinds()
	if !k.AnyGroup {
		kinds, builtin := groups[k.Group]
		if !builtin || slices.Contains(kinds, k.Kind) {
			return "", "" // a custom resource's group, or a kind the group has
		}
		group := k.Group
		if group == "" {
			group = "core"
		}
		return fmt.Sprintf("the built-in group %s has no kind %s%s", group, k.Kind, suggest(k.Kind, kinds)), ""
	}
	var all []string
	for _, kinds := range groups {
		if slices.Contains(kinds, k.Kind) {
			return "", ""
		}
		all = append(all, kinds...)
	}
	return "", fmt.Sprintf("no built-in group has a kind %s%s; if it is a custom resource's kind, write it with its group (as example.com/%s) to say so", k.Kind, suggest(k.Kind, all), k.Kind)
}

// suggest names the kind closest to kind, when one is close: " (did you mean Pod?)".
func suggest(kind string, kinds []string) string {
	best, bestD := "", 3 // at most two edits away
	for _, k := range kinds {
		if d := editDistance(strings.ToLower(kind), strings.ToLower(k)); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
