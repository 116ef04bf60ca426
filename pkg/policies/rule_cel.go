package policies

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/util/version"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// The variables CEL rules see: ValidatingAdmissionPolicy's, plus the pod of any pod-bearing kind.
const (
	varObject    = plugincel.ObjectVarName
	varOldObject = plugincel.OldObjectVarName
	varRequest   = plugincel.RequestVarName
	varNamespace = plugincel.NamespaceVarName
	varPodSpec   = "podSpec"
	varPodMeta   = "podMeta"
)

// newCELEnv builds the environment once: the Kubernetes base environment and libraries from
// k8s.io/apiserver (the ones ValidatingAdmissionPolicy uses, with its cost limits), the same
// variable types, and podSpec/podMeta.
func newCELEnv() (*cel.Env, error) {
	requestType := plugincel.BuildRequestType()
	namespaceType := plugincel.BuildNamespaceType()
	set, err := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()).Extend(
		environment.VersionedOptions{
			IntroducedVersion: version.MajorMinor(1, 0),
			EnvOptions: []cel.EnvOption{
				cel.Variable(varObject, cel.DynType),
				cel.Variable(varOldObject, cel.DynType),
				cel.Variable(varNamespace, namespaceType.CelType()),
				cel.Variable(varRequest, requestType.CelType()),
				cel.Variable(varPodSpec, cel.DynType),
				cel.Variable(varPodMeta, cel.DynType),
			},
			DeclTypes: []*apiservercel.DeclType{namespaceType, requestType},
		},
		environment.StrictCostOpt,
	)
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	return set.Env(environment.StoredExpressions)
}

// celRule is a compiled boolean expression with its message.
type celRule struct {
	expression string
	program    cel.Program
	message    string
	messageExp cel.Program // nil when not set
}

func compileCEL(r *v1alpha1.CELRule, env *cel.Env, path *field.Path) (*celRule, field.ErrorList) {
	var errs field.ErrorList
	rule := &celRule{expression: r.Expression, message: r.Message}
	if strings.TrimSpace(r.Expression) == "" {
		errs = append(errs, field.Required(path.Child("expression"), "a boolean CEL expression"))
	} else {
		prog, err := compileExpression(env, r.Expression, cel.BoolType)
		if err != nil {
			errs = append(errs, field.Invalid(path.Child("expression"), r.Expression, err.Error()))
		}
		rule.program = prog
	}
	if r.MessageExpression != "" {
		prog, err := compileExpression(env, r.MessageExpression, cel.StringType)
		if err != nil {
			errs = append(errs, field.Invalid(path.Child("messageExpression"), r.MessageExpression, err.Error()))
		}
		rule.messageExp = prog
	}
	if strings.Contains(r.Message, "\n") {
		errs = append(errs, field.Invalid(path.Child("message"), r.Message, "must be one line"))
	}
	return rule, errs
}

func compileExpression(env *cel.Env, expr string, want *cel.Type) (cel.Program, error) {
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("compilation failed: %w", iss.Err())
	}
	if !ast.OutputType().IsExactType(want) {
		return nil, fmt.Errorf("must evaluate to %s but got %s", want, ast.OutputType())
	}
	prog, err := env.Program(ast, cel.InterruptCheckFrequency(celconfig.CheckFrequency))
	if err != nil {
		return nil, fmt.Errorf("program instantiation failed: %w", err)
	}
	return prog, nil
}

func (r *celRule) evaluate(in *input) verdict {
	act := in.activation()
	out, _, err := r.program.ContextEval(in.ctx, act)
	if err != nil {
		return evalError(fmt.Errorf("expression %q: %w", r.expression, err))
	}
	ok, isBool := out.(types.Bool)
	if !isBool {
		return evalError(fmt.Errorf("expression %q returned %s, not bool", r.expression, out.Type()))
	}
	if ok {
		return pass()
	}
	return fail(r.failureMessage(in.ctx, act))
}

// failureMessage follows ValidatingAdmissionPolicy: messageExpression when it yields a non-empty
// one-line string, else message, else the failed expression.
func (r *celRule) failureMessage(ctx context.Context, act interpreter.Activation) string {
	if r.messageExp != nil {
		if out, _, err := r.messageExp.ContextEval(ctx, act); err == nil {
			if s, ok := out.(types.String); ok && strings.TrimSpace(string(s)) != "" && !strings.Contains(string(s), "\n") {
				return string(s)
			}
		}
	}
	if r.message != "" {
		return r.message
	}
	return fmt.Sprintf("failed expression: %s", r.expression)
}

// activation binds the variables for one request; the values are built lazily and once.
type activation struct {
	in *input
}

func (a activation) ResolveName(name string) (any, bool) {
	switch name {
	case varObject:
		return a.in.req.Object.celValue(), true
	case varOldObject:
		return a.in.req.OldObject.celValue(), true
	case varRequest:
		return a.in.requestValue(), true
	case varNamespace:
		return a.in.namespaceValue(), true
	case varPodSpec:
		spec, _ := a.in.res.celPodValues()
		return spec, true
	case varPodMeta:
		_, meta := a.in.res.celPodValues()
		return meta, true
	}
	return nil, false
}

func (a activation) Parent() interpreter.Activation { return nil }
