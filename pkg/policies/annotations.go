package policies

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The annotations that give a policy's results their category and severity in reports.
const (
	CategoryAnnotation = "policies.portcullis.dev/category"
	SeverityAnnotation = "policies.portcullis.dev/severity"
	// TitleAnnotation and DescriptionAnnotation say what a policy is for, and what to change.
	TitleAnnotation       = "policies.portcullis.dev/title"
	DescriptionAnnotation = "policies.portcullis.dev/description"
	// MaxCategoryLength bounds the category, which every report result of the policy repeats.
	MaxCategoryLength = 63
)

// Severities are the severities reports accept (OpenReports'), most severe first.
var Severities = []string{"critical", "high", "medium", "low", "info"}

// compileReportAnnotations reads the category and severity annotations; a severity reports
// would refuse, or a category past its bound, is a compile error rather than a report that
// cannot be written.
func compileReportAnnotations(annotations map[string]string, errs field.ErrorList) (category, severity string, _ field.ErrorList) {
	path := field.NewPath("metadata", "annotations")
	category, severity = annotations[CategoryAnnotation], annotations[SeverityAnnotation]
	if len(category) > MaxCategoryLength || strings.ContainsAny(category, "\n\r") {
		errs = append(errs, field.Invalid(path.Key(CategoryAnnotation), category, fmt.Sprintf("must be one line of at most %d characters", MaxCategoryLength)))
	}
	if severity != "" && !slices.Contains(Severities, severity) {
		errs = append(errs, field.NotSupported(path.Key(SeverityAnnotation), severity, Severities))
	}
	return category, severity, errs
}
