// Package audit judges the objects that already exist, in the background, with the engine and
// the policy source admission uses, and writes what it finds as OpenReports Reports: one per
// namespace and one ClusterReport for cluster-scoped objects. It lists a page at a time and
// keeps, per object, its counts and the results a report lists, never whole objects.
package audit
