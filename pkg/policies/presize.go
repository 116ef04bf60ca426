package policies

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/portcullis-dev/portcullis/internal/jsonscan"
)

// What the JSON decoder would grow, made once at its size.
//
// The webhook's decoder grows a slice as append does, from 4 elements up: the benchmark Pod's 26
// environment variables per container are decoded into arrays of 4, 8, 16 and 32, and its 2
// containers (408 bytes each) into an array of 4. It decodes into the capacity a slice already
// has, though, and into the elements of its array past its length. So the pass that reads an
// object's bounds (scanBounds), made before the object is decoded, also reads the lengths of the
// pod spec's arrays that the decoder grows the most (podSizer): the spec's containers, init
// containers, volumes, tolerations, topology spread constraints and image pull secrets, and each
// container's env, ports, volume mounts, command and args. presize then makes each slice empty,
// with that length as capacity, the containers' own slices in the elements of theirs, and the
// decoder fills them in place.
//
// It changes nothing the decoder decodes: a slice is given capacity only for a non-empty array
// that the decoder decodes into it (the last of its key, written as the field's JSON name without
// escapes), so that the decoder sets its length; a slice whose array the JSON lacks stays nil.
// TestPresizedDecodeAgrees and FuzzPresizedDecodeAgrees hold the objects decoded with and without
// it to be the same.

// maxPresized is the longest array presize sizes: a longer one the decoder grows, as it did.
const maxPresized = 1024

// maxPresizedContainers is how many containers of a list have their own arrays sized.
const maxPresizedContainers = 16

// The arrays of a pod spec podSizer reads the lengths of.
const (
	sizeVolumes = iota
	sizeTolerations
	sizeTopology
	sizePullSecrets
	specArrays
)

// The arrays of a container podSizer reads the lengths of.
const (
	sizeEnv = iota
	sizePorts
	sizeMounts
	sizeCommand
	sizeArgs
	containerArrays
)

// containerLists are the lists of containers podSizer sizes: containers and initContainers.
const containerLists = 2

// The part a JSON object or array plays in podSizer's reading.
const (
	roleNone       = iota
	rolePath       // an object on the way to the pod spec: its member path[at] leads on
	roleSpec       // the pod spec
	roleContainers // a list of containers (list)
	roleContainer  // one of them (list, index)
	roleCount      // an array whose length is read (what: a spec's array, or a container's)
)

// sizerFrame is what podSizer knows of one open object or array.
type sizerFrame struct {
	role, list, what uint8
	inContainer      bool
	empty            bool  // an array with no element
	at               int16 // rolePath: the key of path it follows; roleContainer, roleCount: the container's index
}

// specLengths are the lengths podSizer read.
type specLengths struct {
	spec       [specArrays]int
	lists      [containerLists]int
	containers [containerLists][maxPresizedContainers][containerArrays]int
}

// podSizer follows scanBounds through an object to its pod spec (path: the keys that lead there)
// and reads the lengths of its arrays.
type podSizer struct {
	path    []string
	frames  [maxBoundsDepth]sizerFrame
	pending sizerFrame // what the value after a key is, when the key is one podSizer follows
	keyed   int        // the depth that value opens at; -1: no key pending
	lengths specLengths
}

// reset readies z to read an object whose pod spec path leads to.
func (z *podSizer) reset(path []string) {
	z.path, z.keyed, z.lengths = path, -1, specLengths{}
}

// keys reports whether podSizer reads the keys of the object open at depth: str need be called
// for its strings only.
func (z *podSizer) keys(depth int) bool {
	if depth == 0 {
		return false
	}
	r := z.frames[depth-1].role
	return r == rolePath || r == roleSpec || r == roleContainer
}

// str is a string of data, js[i:end], inside the object at depth-1, whose keys podSizer reads:
// a key podSizer follows sets what the value after it is.
func (z *podSizer) str(js []byte, i, end, depth int) {
	f := &z.frames[depth-1]
	z.keyed = -1
	if j := jsonscan.Space(js, end); j == len(js) || js[j] != ':' {
		return // a value, not a key
	}
	key := string(js[i+1 : end-1])
	p := sizerFrame{list: f.list, at: f.at}
	switch f.role {
	case rolePath:
		if key != z.path[f.at] {
			return
		}
		if p.role, p.at = rolePath, f.at+1; int(p.at) == len(z.path) {
			p.role = roleSpec
		}
	case roleSpec:
		switch key {
		case "containers":
			p.role, p.list = roleContainers, 0
		case "initContainers":
			p.role, p.list = roleContainers, 1
		case "volumes":
			p.role, p.what = roleCount, sizeVolumes
		case "tolerations":
			p.role, p.what = roleCount, sizeTolerations
		case "topologySpreadConstraints":
			p.role, p.what = roleCount, sizeTopology
		case "imagePullSecrets":
			p.role, p.what = roleCount, sizePullSecrets
		default:
			return
		}
	case roleContainer:
		p.role, p.inContainer = roleCount, true
		switch key {
		case "env":
			p.what = sizeEnv
		case "ports":
			p.what = sizePorts
		case "volumeMounts":
			p.what = sizeMounts
		case "command":
			p.what = sizeCommand
		case "args":
			p.what = sizeArgs
		default:
			return
		}
	}
	z.pending, z.keyed = p, depth
}

// open is the object or array opening at js[i], the frame at depth; index is its place in the
// array around it.
func (z *podSizer) open(js []byte, i, depth, index int) {
	object := js[i] == '{'
	f := sizerFrame{}
	switch {
	case depth == 0:
		if object {
			f.role = rolePath
			if len(z.path) == 0 {
				f.role = roleSpec
			}
		}
	case z.keyed == depth:
		p := z.pending
		if object == (p.role == rolePath || p.role == roleSpec) {
			f = p
		}
	case object && z.frames[depth-1].role == roleContainers:
		f = sizerFrame{role: roleContainer, list: z.frames[depth-1].list, at: int16(min(index, maxPresizedContainers))} //nolint:gosec // at most maxPresizedContainers
	}
	z.keyed = -1
	if !object {
		j := jsonscan.Space(js, i+1)
		f.empty = j < len(js) && js[j] == ']'
	}
	if f.role == roleContainers { // the last list of its key is the one decoded last: read it anew
		z.lengths.lists[f.list] = 0
		z.lengths.containers[f.list] = [maxPresizedContainers][containerArrays]int{}
	}
	z.frames[depth] = f
}

// close is the frame at depth closing, an array of n elements unless it is empty.
func (z *podSizer) close(depth, n int) {
	z.keyed = -1
	f := &z.frames[depth]
	if f.empty {
		n = 0
	}
	switch {
	case f.role == roleContainers:
		z.lengths.lists[f.list] = n
	case f.role == roleCount && !f.inContainer:
		z.lengths.spec[f.what] = n
	case f.role == roleCount && f.at < maxPresizedContainers:
		z.lengths.containers[f.list][f.at][f.what] = n
	}
}

// presize makes the slices of spec, not yet decoded, with the lengths read as their capacity.
func (l *specLengths) presize(spec *corev1.PodSpec) {
	spec.Volumes = sized(spec.Volumes, l.spec[sizeVolumes])
	spec.Tolerations = sized(spec.Tolerations, l.spec[sizeTolerations])
	spec.TopologySpreadConstraints = sized(spec.TopologySpreadConstraints, l.spec[sizeTopology])
	spec.ImagePullSecrets = sized(spec.ImagePullSecrets, l.spec[sizePullSecrets])
	for list, cs := range []*[]corev1.Container{&spec.Containers, &spec.InitContainers} {
		n := l.lists[list]
		if n == 0 || n > maxPresized {
			continue
		}
		containers := make([]corev1.Container, n)
		for i := range min(n, maxPresizedContainers) {
			c, lengths := &containers[i], &l.containers[list][i]
			c.Env = sized(c.Env, lengths[sizeEnv])
			c.Ports = sized(c.Ports, lengths[sizePorts])
			c.VolumeMounts = sized(c.VolumeMounts, lengths[sizeMounts])
			c.Command = sized(c.Command, lengths[sizeCommand])
			c.Args = sized(c.Args, lengths[sizeArgs])
		}
		*cs = containers[:0]
	}
}

// sized is s (nil), or an empty slice of capacity n for 1 to maxPresized elements.
func sized[T any](s []T, n int) []T {
	if n > 0 && n <= maxPresized {
		return make([]T, 0, n)
	}
	return s
}
