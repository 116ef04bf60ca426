package intercept

import (
	"context"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// CRD is how a metadata-only watch names CustomResourceDefinitions.
var CRD = &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"}}

// Watch calls changed whenever the named webhook configurations ("" for none), or a
// CustomResourceDefinition, are created, changed or deleted: the rules, the caBundle or the kinds
// served may then need repair. The manager's cache should hold only the named configurations (a
// field selector per kind, which RBAC by resource name requires); CRDs are watched by metadata
// only.
func Watch(mgr manager.Manager, validating, mutating string, changed func()) error {
	named := func(name string) handler.EventHandler {
		return handler.EnqueueRequestsFromMapFunc(func(_ context.Context, obj client.Object) []reconcile.Request {
			if name != "" && obj.GetName() != name {
				return nil
			}
			return []reconcile.Request{{}}
		})
	}
	b := ctrl.NewControllerManagedBy(mgr).Named("webhook-configurations").
		WatchesMetadata(CRD, named("")).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1})
	if validating != "" {
		b = b.Watches(&admissionregistrationv1.ValidatingWebhookConfiguration{}, named(validating))
	}
	if mutating != "" {
		b = b.Watches(&admissionregistrationv1.MutatingWebhookConfiguration{}, named(mutating))
	}
	return b.Complete(reconcile.Func(func(context.Context, reconcile.Request) (reconcile.Result, error) {
		changed()
		return reconcile.Result{}, nil
	}))
}
