// SPDX-License-Identifier: GPL-2.0
/*
 * msrdrv sampler: kernel-timed sampling of MSRs.
 *
 * MSRDRV_IOC_SAMPLER_START registers an op set (READ and RDTSC only) with a
 * set of CPUs, a period and a ring size, and returns a new file: the
 * sampler.  Each sampled CPU runs the ops from its own pinned hrtimer, in
 * hard irq context, and appends a fixed-size record to its own ring.  The
 * rings live in one vmalloc area, charged to the caller's memory cgroup,
 * that user space maps read-only; the reader learns of new records through
 * poll() (a watermark, so it wakes rarely) and hands them back with
 * MSRDRV_IOC_SAMPLER_CONSUME.  A full ring drops and counts new records.
 *
 * Each ring has a single producer: its CPU's timer callback, or the CPU
 * hotplug callbacks on that CPU while the timer is stopped.  The consumer
 * only moves the ring's tail (under the sampler's mutex).  CPU hotplug
 * (a multi-instance cpuhp state) stops a ring's timer on offline and
 * restarts it on online, each recorded.  The access policy checks the ops
 * at start and on every new allowlist (msrdrv_policy_watch); a revoked op
 * is never read again once SET returns, since SET waits for an RCU grace
 * period and every timer callback runs with interrupts off.
 *
 * The ticks' interrupt time is bounded per CPU, as perf bounds its
 * sampling (perf_cpu_time_max_percent): each CPU adds up its ticks' time,
 * plus what each of their interrupts costs the task it interrupts
 * (sampler_irq_ns, measured at load), over 10 ms windows; once all
 * samplers took sampler_cpu_pct of a window,
 * or members' samplers sampler_cpu_pct_user, that CPU's over-budget
 * samplers skip to the next window, counting the skipped ticks as
 * throttled.  START refuses an op set whose measured cost alone cannot fit
 * its opener's share at the requested period (EDQUOT).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/anon_inodes.h>
#include <linux/atomic.h>
#include <linux/compat.h>
#include <linux/cpu.h>
#include <linux/cpuhotplug.h>
#include <linux/cpumask.h>
#include <linux/delay.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/hrtimer.h>
#include <linux/irq_work.h>
#include <linux/kernel.h>
#include <linux/log2.h>
#include <linux/math64.h>
#include <linux/mm.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/nospec.h>
#include <linux/poll.h>
#include <linux/sched.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>
#include <asm/tsc.h>

#include "msrdrv.h"
#include "msrdrv_compat.h"
#include "msrdrv_policy.h"
#include "msrdrv_sampler.h"

/* Bounds a module parameter may not leave (root is bounded too). */
#define MSRDRV_SAMPLER_PERIOD_FLOOR_NS	1000UL
#define MSRDRV_SAMPLER_KIB_LIMIT	SZ_1M	/* KiB: 1 GiB */

static unsigned int sampler_max = 16;
module_param(sampler_max, uint, 0444);
MODULE_PARM_DESC(sampler_max, "Most samplers at once (0-1024, default 16)");

static unsigned int sampler_max_user = 4;
module_param(sampler_max_user, uint, 0444);
MODULE_PARM_DESC(sampler_max_user,
		 "Most samplers at once one user starts without CAP_SYS_RAWIO (default 4, never above sampler_max)");

static unsigned long sampler_min_period_ns = 10000;
module_param(sampler_min_period_ns, ulong, 0444);
MODULE_PARM_DESC(sampler_min_period_ns,
		 "Shortest sampling period in ns (1000-60e9, default 10000)");

static unsigned long sampler_min_period_ns_user = 100000;
module_param(sampler_min_period_ns_user, ulong, 0444);
MODULE_PARM_DESC(sampler_min_period_ns_user,
		 "Shortest sampling period without CAP_SYS_RAWIO (default 100000, never below sampler_min_period_ns)");

static unsigned int sampler_max_ops_user = 16;
module_param(sampler_max_ops_user, uint, 0444);
MODULE_PARM_DESC(sampler_max_ops_user,
		 "Most ops in a sampler's set without CAP_SYS_RAWIO (1-64, default 16; 64 with it)");

static unsigned int sampler_max_kib = 65536;
module_param(sampler_max_kib, uint, 0444);
MODULE_PARM_DESC(sampler_max_kib,
		 "Most memory of one sampler, in KiB (16-1048576, default 65536)");

static unsigned int sampler_max_kib_user = 4096;
module_param(sampler_max_kib_user, uint, 0444);
MODULE_PARM_DESC(sampler_max_kib_user,
		 "Most memory of one user's samplers without CAP_SYS_RAWIO, in KiB (default 4096, never above sampler_max_kib)");

static unsigned int sampler_cpu_pct = 25;
module_param(sampler_cpu_pct, uint, 0444);
MODULE_PARM_DESC(sampler_cpu_pct,
		 "Most of each CPU's time all samplers' ticks may take, in percent (1-100, default 25)");

static unsigned int sampler_cpu_pct_user = 5;
module_param(sampler_cpu_pct_user, uint, 0444);
MODULE_PARM_DESC(sampler_cpu_pct_user,
		 "Most of each CPU's time samplers started without CAP_SYS_RAWIO may take, in percent (default 5, never above sampler_cpu_pct)");

/*
 * What one timer interrupt costs the task it interrupts (entry, hrtimer
 * code, exit), charged to each interrupt a sampler's tick starts.  Not the
 * tick's lateness: that also holds time other code or a hypervisor kept
 * the CPU, which would throttle even a slow sampler under a busy host.
 */
static unsigned long sampler_irq_ns;
module_param(sampler_irq_ns, ulong, 0644);
MODULE_PARM_DESC(sampler_irq_ns,
		 "What one timer interrupt costs the interrupted task, in ns, charged to the samplers' budget (0 at load: measured; at most 1000000)");

#define MSRDRV_IRQ_NS_MAX	NSEC_PER_MSEC
#define MSRDRV_BUDGET_WINDOW_NS	(10 * NSEC_PER_MSEC)
/*
 * After the ticks of one interrupt took MSRDRV_BURST_NS, the rest back
 * off, so one interrupt never runs much longer than that plus one tick
 * (64 reads at most).
 */
#define MSRDRV_BURST_NS		(50 * NSEC_PER_USEC)
#define MSRDRV_BURST_BACKOFF_NS	NSEC_PER_MSEC

/*
 * Per CPU, the samplers' tick time in the current window.  Only that CPU's
 * ticks touch it, in hard irq: no lock.
 */
struct msrdrv_budget {
	ktime_t start;		/* when the window began */
	ktime_t last_end;	/* when the latest tick on this CPU ended */
	u64 burst;		/* the ticks of this interrupt, ns */
	u64 used;		/* every sampler's ticks, ns */
	u64 used_user;		/* the share of samplers without CAP_SYS_RAWIO */
};

static DEFINE_PER_CPU(struct msrdrv_budget, msrdrv_budget);

/*
 * Allocations a caller asks for: charged to its memory cgroup, and failing
 * with ENOMEM rather than waking the OOM killer (global or the cgroup's).
 */
#define MSRDRV_SAMPLER_GFP \
	(GFP_KERNEL_ACCOUNT | __GFP_NOWARN | __GFP_RETRY_MAYFAIL)

static enum cpuhp_state msrdrv_cpuhp;
static atomic_t msrdrv_nsamplers = ATOMIC_INIT(0);

/*
 * Samplers and ring memory of openers without CAP_SYS_RAWIO, per user: one
 * member cannot hold every member's share (sampler_max stays the ceiling
 * for all).  A user's entry lives while it has samplers.
 */
struct msrdrv_quota {
	struct list_head node;
	kuid_t uid;
	u32 nsamplers;
	u64 bytes;
};

static LIST_HEAD(msrdrv_quotas);
static DEFINE_MUTEX(msrdrv_quota_lock);

struct msrdrv_sampler;

/* One sampled CPU. */
struct msrdrv_ring {
	struct hrtimer timer;
	struct msrdrv_sampler *s;
	struct msrdrv_ring_header *hdr;	/* in the mapped area */
	u8 *data;			/* nrecords records, after hdr */
	unsigned int cpu;
	bool started;		/* ran before: a later start is an ONLINE */
	u64 seq;		/* the next record's seq */
	u64 revoked_seen;	/* the revoked ops this ring has reported */
	u64 event_head;		/* head just past the latest event record */
};

struct msrdrv_sampler {
	struct hlist_node cpuhp;
	struct msrdrv_policy_watch watch;
	struct msrdrv_op *ops;
	u64 revoked;		/* written under the allowlist mutex */
	ktime_t period;
	ktime_t epoch;		/* ticks fall on epoch + k * period */
	void *buf;		/* the mapped area */
	size_t size;
	kuid_t uid;		/* who started it: its quota (without rawio) */
	u32 nops, nrecords, record_size, watermark, nrings;
	bool rawio;
	bool cpuhp_added;	/* timers run: stop() or release() ends them */
	bool closing;
	int armed;		/* a poller waits: wake it at the watermark */
	wait_queue_head_t wq;
	struct irq_work wake;	/* wakes wq from hard irq, RT-safe */
	struct mutex lock;	/* serializes CONSUME and STOP */
	struct msrdrv_ring rings[];	/* ascending CPU */
};

static u64 msrdrv_sampler_min_period(bool rawio)
{
	return rawio ? sampler_min_period_ns :
		       max(sampler_min_period_ns, sampler_min_period_ns_user);
}

static u32 msrdrv_sampler_max_ops(bool rawio)
{
	return rawio ? MSRDRV_SAMPLER_MAX_OPS :
		       min_t(u32, sampler_max_ops_user, MSRDRV_SAMPLER_MAX_OPS);
}

static u32 msrdrv_sampler_max_kib(bool rawio)
{
	return rawio ? sampler_max_kib :
		       min(sampler_max_kib, sampler_max_kib_user);
}

/* The tick time an opener's samplers may take of each window, in ns. */
static u64 msrdrv_budget_ns(bool rawio)
{
	u32 pct = rawio ? sampler_cpu_pct :
			  min(sampler_cpu_pct, sampler_cpu_pct_user);

	return MSRDRV_BUDGET_WINDOW_NS / 100 * pct;
}

void msrdrv_sampler_info(const struct file *file, struct msrdrv_info *info)
{
	const struct msrdrv_file *mf = file->private_data;

	info->features |= MSRDRV_FEAT_SAMPLER;
	info->sampler_min_period_ns = msrdrv_sampler_min_period(mf->rawio);
	info->sampler_max_ops = msrdrv_sampler_max_ops(mf->rawio);
	info->sampler_max_kib = msrdrv_sampler_max_kib(mf->rawio);
}

/* --- quotas --------------------------------------------------------------- */

static struct msrdrv_quota *msrdrv_quota_find(kuid_t uid)
{
	struct msrdrv_quota *q;

	list_for_each_entry(q, &msrdrv_quotas, node)
		if (uid_eq(q->uid, uid))
			return q;
	return NULL;
}

/* Charge one sampler of size bytes to uid: 0, EBUSY, EFBIG or ENOMEM. */
static int msrdrv_quota_get(kuid_t uid, u64 size)
{
	struct msrdrv_quota *q;
	int err = 0;

	mutex_lock(&msrdrv_quota_lock);
	q = msrdrv_quota_find(uid);
	if (!q) {
		q = kzalloc(sizeof(*q), GFP_KERNEL);
		if (!q) {
			err = -ENOMEM;
			goto out;
		}
		q->uid = uid;
		list_add(&q->node, &msrdrv_quotas);
	}
	if (q->nsamplers >= min(sampler_max, sampler_max_user))
		err = -EBUSY;
	else if (q->bytes + size > (u64)msrdrv_sampler_max_kib(false) * SZ_1K)
		err = -EFBIG;
	else
		q->bytes += size;
	if (!err)
		q->nsamplers++;
	if (!q->nsamplers) {
		list_del(&q->node);
		kfree(q);
	}
out:
	mutex_unlock(&msrdrv_quota_lock);
	return err;
}

static void msrdrv_quota_put(kuid_t uid, u64 size)
{
	struct msrdrv_quota *q;

	mutex_lock(&msrdrv_quota_lock);
	q = msrdrv_quota_find(uid);
	if (!WARN_ON_ONCE(!q)) {
		q->bytes -= size;
		if (!--q->nsamplers) {
			list_del(&q->node);
			kfree(q);
		}
	}
	mutex_unlock(&msrdrv_quota_lock);
}

/* A slot under sampler_max, and for members their user's quota. */
static int msrdrv_sampler_get_slot(bool rawio, kuid_t uid, u64 size)
{
	int err;

	if (atomic_inc_return(&msrdrv_nsamplers) > sampler_max) {
		atomic_dec(&msrdrv_nsamplers);
		return -EBUSY;
	}
	err = rawio ? 0 : msrdrv_quota_get(uid, size);
	if (err)
		atomic_dec(&msrdrv_nsamplers);
	return err;
}

static void msrdrv_sampler_put_slot(bool rawio, kuid_t uid, u64 size)
{
	if (!rawio)
		msrdrv_quota_put(uid, size);
	atomic_dec(&msrdrv_nsamplers);
}

/* --- the rings: single producer per ring ------------------------------- */

/*
 * The next slot, or NULL (counted as dropped) when the reader has not
 * handed back enough.  Every call takes a seq, so gaps are the drops.
 */
static struct msrdrv_record *msrdrv_ring_claim(struct msrdrv_ring *r)
{
	const struct msrdrv_sampler *s = r->s;
	struct msrdrv_ring_header *h = r->hdr;
	struct msrdrv_record *rec;
	u64 head = h->head;

	/* Acquire: the reader is done with a slot before its tail passes it. */
	if (head - smp_load_acquire(&h->tail) >= s->nrecords) {
		r->seq++;
		WRITE_ONCE(h->dropped, h->dropped + 1);
		return NULL;
	}
	rec = (struct msrdrv_record *)(r->data + (head & (s->nrecords - 1)) *
				       (u64)s->record_size);
	rec->seq = r->seq++;
	rec->cpu = r->cpu;
	return rec;
}

/* Publish the claimed record; wake a poller at the watermark or an event. */
static void msrdrv_ring_commit(struct msrdrv_ring *r, bool event)
{
	struct msrdrv_sampler *s = r->s;
	struct msrdrv_ring_header *h = r->hdr;
	u64 head = h->head + 1;

	if (event)
		WRITE_ONCE(r->event_head, head);
	/* Release: the record is whole before a reader sees head pass it. */
	smp_store_release(&h->head, head);
	if (!event && head - READ_ONCE(h->tail) < s->watermark)
		return;
	/* head before armed; pairs with the barrier in poll. */
	smp_mb();
	if (READ_ONCE(s->armed) && xchg(&s->armed, 0))
		irq_work_queue(&s->wake);
}

static void msrdrv_ring_event(struct msrdrv_ring *r, u32 type, u64 errs)
{
	struct msrdrv_record *rec = msrdrv_ring_claim(r);

	if (!rec)
		return;
	rec->tsc = rdtsc_ordered();
	rec->errs = errs;
	rec->type = type;
	memset(rec->values, 0, r->s->nops * sizeof(rec->values[0]));
	msrdrv_ring_commit(r, true);
}

/* One READ or RDTSC op of a tick: false if the MSR faulted. */
static bool msrdrv_sample_op(const struct msrdrv_op *op, u64 *val)
{
	if (op->op == MSRDRV_OP_RDTSC) {
		*val = rdtsc_ordered();
		return true;
	}
	return !msrdrv_rdmsr_safe(op->msr, val);
}

/* One tick's record, interrupts off on r's CPU. */
static void msrdrv_ring_sample(struct msrdrv_ring *r)
{
	const struct msrdrv_sampler *s = r->s;
	u64 revoked = READ_ONCE(s->revoked), errs = 0, val;
	struct msrdrv_record *rec;
	u32 i;

	if (unlikely(revoked != r->revoked_seen)) {
		msrdrv_ring_event(r, MSRDRV_REC_REVOKED,
				  revoked & ~r->revoked_seen);
		r->revoked_seen = revoked;
		WRITE_ONCE(r->hdr->revoked, revoked);
	}
	rec = msrdrv_ring_claim(r);
	if (!rec)
		return;
	rec->tsc = rdtsc_ordered();
	for (i = 0; i < s->nops; i++) {
		val = 0;
		if (revoked & BIT_ULL(i)) {
			errs |= BIT_ULL(i);
		} else if (!msrdrv_sample_op(&s->ops[i], &val)) {
			val = 0;
			errs |= BIT_ULL(i);
		}
		rec->values[i] = val;
	}
	rec->errs = errs;
	rec->type = MSRDRV_REC_SAMPLE;
	msrdrv_ring_commit(r, false);
}

/* Charge this CPU's window; a member's sampler also its members' share. */
static void msrdrv_budget_charge(struct msrdrv_budget *b, bool rawio, u64 ns)
{
	b->used += ns;
	if (!rawio)
		b->used_user += ns;
}

static enum hrtimer_restart msrdrv_sampler_tick(struct hrtimer *timer)
{
	struct msrdrv_ring *r = container_of(timer, struct msrdrv_ring, timer);
	const struct msrdrv_sampler *s = r->s;
	struct msrdrv_budget *b = this_cpu_ptr(&msrdrv_budget);
	ktime_t due = hrtimer_get_expires(timer), now = ktime_get(), end;
	u64 overruns, entry, cost;
	/*
	 * The tick before ended after this one fell due: both ran in one
	 * interrupt, and this one pays only the gap between them.
	 */
	bool same = ktime_after(b->last_end, due);

	entry = same ? ktime_sub(now, b->last_end) :
		       min_t(u64, READ_ONCE(sampler_irq_ns), MSRDRV_IRQ_NS_MAX);
	if (ktime_sub(now, b->start) >= MSRDRV_BUDGET_WINDOW_NS) {
		b->start = now;
		b->used = 0;
		b->used_user = 0;
	}
	if (!same)
		b->burst = 0;
	if (b->used >= msrdrv_budget_ns(true) ||
	    (!s->rawio && b->used_user >= msrdrv_budget_ns(false)) ||
	    b->burst >= MSRDRV_BURST_NS) {
		/*
		 * Over budget: no read until the next window (after a long
		 * burst, a millisecond on); count the skipped periods.  The
		 * interrupt was taken all the same: charge it.
		 */
		end = b->burst >= MSRDRV_BURST_NS ?
		      ktime_add_ns(now, MSRDRV_BURST_BACKOFF_NS) :
		      ktime_add_ns(b->start, MSRDRV_BUDGET_WINDOW_NS);
		overruns = hrtimer_forward(timer, end, s->period);
		WRITE_ONCE(r->hdr->throttled, r->hdr->throttled + overruns);
		msrdrv_budget_charge(b, s->rawio, entry);
		b->last_end = ktime_get();
		return HRTIMER_RESTART;
	}
	msrdrv_ring_sample(r);
	end = ktime_get();
	cost = ktime_sub(end, now);
	b->last_end = end;
	b->burst += cost + (same ? entry : 0);
	msrdrv_budget_charge(b, s->rawio, cost + entry);
	/* From the tick's end: a tick longer than a period counts as missed. */
	overruns = hrtimer_forward(timer, end, s->period);
	if (overruns > 1)
		WRITE_ONCE(r->hdr->missed, r->hdr->missed + overruns - 1);
	return HRTIMER_RESTART;
}

static void msrdrv_sampler_wake(struct irq_work *work)
{
	struct msrdrv_sampler *s = container_of(work, struct msrdrv_sampler,
						wake);

	wake_up_interruptible_poll(&s->wq, EPOLLIN | EPOLLRDNORM);
}

/* --- CPU hotplug: runs on the CPU concerned ----------------------------- */

static struct msrdrv_ring *msrdrv_sampler_ring(struct msrdrv_sampler *s,
					       unsigned int cpu)
{
	u32 lo = 0, hi = s->nrings, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (s->rings[mid].cpu < cpu)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->nrings && s->rings[lo].cpu == cpu ? &s->rings[lo] :
							     NULL;
}

/* The first tick after now on the sampler's grid: CPUs tick together. */
static ktime_t msrdrv_sampler_next(const struct msrdrv_sampler *s)
{
	u64 period = ktime_to_ns(s->period);
	u64 since = ktime_to_ns(ktime_sub(ktime_get(), s->epoch));

	return ktime_add_ns(s->epoch, (div64_u64(since, period) + 1) * period);
}

static int msrdrv_sampler_online(unsigned int cpu, struct hlist_node *node)
{
	struct msrdrv_sampler *s = hlist_entry(node, struct msrdrv_sampler,
					       cpuhp);
	struct msrdrv_ring *r = msrdrv_sampler_ring(s, cpu);

	if (!r)
		return 0;
	/* The timer is not running: this thread is the ring's producer. */
	if (r->started)
		msrdrv_ring_event(r, MSRDRV_REC_ONLINE, 0);
	r->started = true;
	WRITE_ONCE(r->hdr->state, MSRDRV_RING_RUNNING);
	hrtimer_start(&r->timer, msrdrv_sampler_next(s),
		      HRTIMER_MODE_ABS_PINNED_HARD);
	return 0;
}

static int msrdrv_sampler_offline(unsigned int cpu, struct hlist_node *node)
{
	struct msrdrv_sampler *s = hlist_entry(node, struct msrdrv_sampler,
					       cpuhp);
	struct msrdrv_ring *r = msrdrv_sampler_ring(s, cpu);

	if (!r)
		return 0;
	hrtimer_cancel(&r->timer);
	WRITE_ONCE(r->hdr->state, MSRDRV_RING_OFFLINE);
	if (!READ_ONCE(s->closing))
		msrdrv_ring_event(r, MSRDRV_REC_OFFLINE, 0);
	return 0;
}

/* --- policy ------------------------------------------------------------- */

/* Under the allowlist mutex; SET then waits for every running tick. */
static void msrdrv_sampler_revoke(struct msrdrv_policy_watch *w, u64 denied)
{
	struct msrdrv_sampler *s = container_of(w, struct msrdrv_sampler,
						watch);
	struct msrdrv_sampler_header *hdr = s->buf;
	u64 revoked = s->revoked | denied;

	WRITE_ONCE(s->revoked, revoked);
	WRITE_ONCE(hdr->revoked, revoked);
}

/* --- the sampler's file ------------------------------------------------- */

/*
 * Stop every ring for good, each timer on its own CPU; no record is made.
 * Under s->lock, or from release() when no ioctl can run.
 */
static void msrdrv_sampler_stop(struct msrdrv_sampler *s)
{
	u32 i;

	if (!s->cpuhp_added)
		return;
	WRITE_ONCE(s->closing, true);
	cpuhp_state_remove_instance(msrdrv_cpuhp, &s->cpuhp);
	s->cpuhp_added = false;
	for (i = 0; i < s->nrings; i++)
		WRITE_ONCE(s->rings[i].hdr->state, MSRDRV_RING_STOPPED);
	/* A reader waiting in poll() learns that nothing more comes. */
	wake_up_interruptible_poll(&s->wq, EPOLLHUP);
}

static void msrdrv_sampler_free(struct msrdrv_sampler *s)
{
	vfree(s->buf);
	kvfree(s->ops);
	msrdrv_sampler_put_slot(s->rawio, s->uid, s->size);
	mutex_destroy(&s->lock);
	kvfree(s);
}

static int msrdrv_sampler_release(struct inode *inode, struct file *file)
{
	struct msrdrv_sampler *s = file->private_data;

	msrdrv_sampler_stop(s);
	msrdrv_policy_watch_del(&s->watch);
	irq_work_sync(&s->wake);
	msrdrv_sampler_free(s);
	return 0;
}

static __poll_t msrdrv_sampler_poll(struct file *file, poll_table *pt)
{
	struct msrdrv_sampler *s = file->private_data;
	__poll_t mask = 0;
	u32 i;

	poll_wait(file, &s->wq, pt);
	WRITE_ONCE(s->armed, 1);
	/* armed before head; pairs with the barrier in commit. */
	smp_mb();
	if (READ_ONCE(s->closing))
		mask |= EPOLLHUP;
	for (i = 0; i < s->nrings; i++) {
		const struct msrdrv_ring *r = &s->rings[i];
		u64 tail = READ_ONCE(r->hdr->tail);

		if (READ_ONCE(r->hdr->head) - tail >= s->watermark ||
		    READ_ONCE(r->event_head) > tail)
			return mask | EPOLLIN | EPOLLRDNORM;
	}
	return mask;
}

/* Pages per vm_insert_pages() call: a 4 KiB array, a reschedule between. */
#define MSRDRV_MAP_CHUNK	(PAGE_SIZE / sizeof(struct page *))

/* Insert the vmalloc'ed rings' pages in chunks: a root ring may be 1 GiB. */
static int msrdrv_sampler_map_pages(struct msrdrv_sampler *s,
				    struct vm_area_struct *vma)
{
	unsigned long off = 0, n, i;
	struct page **pages;
	int err = 0;

	pages = kmalloc_array(MSRDRV_MAP_CHUNK, sizeof(*pages), GFP_KERNEL);
	if (!pages)
		return -ENOMEM;
	while (off < s->size && !err) {
		n = min_t(unsigned long, MSRDRV_MAP_CHUNK,
			  (s->size - off) >> PAGE_SHIFT);
		for (i = 0; i < n; i++)
			pages[i] = vmalloc_to_page((u8 *)s->buf + off +
						   (i << PAGE_SHIFT));
		/* n comes back as the pages not inserted: 0 on success. */
		err = vm_insert_pages(vma, vma->vm_start + off, pages, &n);
		off += MSRDRV_MAP_CHUNK << PAGE_SHIFT;
		cond_resched();
	}
	kfree(pages);
	return err;
}

/*
 * Read-only, shared, whole: refuse write access now and later (mprotect),
 * and map every page up front; there is no fault handler.
 */
static int msrdrv_sampler_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct msrdrv_sampler *s = file->private_data;

	if (vma->vm_flags & VM_WRITE)
		return -EPERM;
	/* The records carry the TSC: PR_SET_TSC forbids reading them. */
	if (test_thread_flag(TIF_NOTSC))
		return -EPERM;
	if (!(vma->vm_flags & VM_MAYSHARE) || vma->vm_pgoff ||
	    vma->vm_end - vma->vm_start != s->size)
		return -EINVAL;
	msrdrv_vm_flags_mod(vma, VM_DONTEXPAND | VM_DONTDUMP, VM_MAYWRITE);
	return msrdrv_sampler_map_pages(s, vma);
}

#define MSRDRV_CONSUME_STACK	16

static long msrdrv_sampler_consume(struct msrdrv_sampler *s,
				   struct msrdrv_sampler_consume __user *u)
{
	u64 stack[MSRDRV_CONSUME_STACK], *tails = stack;
	struct msrdrv_sampler_consume c;
	long err = 0;
	u32 i;

	if (copy_from_user(&c, u, sizeof(c)))
		return -EFAULT;
	if (c.abi_version != MSRDRV_ABI_VERSION)
		return -EPROTO;
	if (c.nrings != s->nrings)
		return -EINVAL;
	/* As mmap: PR_SET_TSC after START, or a child that inherited the fd. */
	if (test_thread_flag(TIF_NOTSC))
		return -EPERM;
	if (c.nrings > MSRDRV_CONSUME_STACK) {
		tails = kvmalloc_array(c.nrings, sizeof(*tails),
				       MSRDRV_SAMPLER_GFP);
		if (!tails)
			return -ENOMEM;
	}
	if (copy_from_user(tails, u64_to_user_ptr(c.tails),
			   array_size(c.nrings, sizeof(*tails)))) {
		err = -EFAULT;
		goto out;
	}
	mutex_lock(&s->lock);
	for (i = 0; i < c.nrings && !err; i++) {
		const struct msrdrv_ring_header *h = s->rings[i].hdr;

		/* Acquire: a tail never passes a record not yet whole. */
		if (tails[i] < h->tail || tails[i] > smp_load_acquire(&h->head))
			err = -EINVAL;
	}
	for (i = 0; i < c.nrings && !err; i++) {
		/* Release: pairs with the acquire in claim; the slots are free. */
		smp_store_release(&s->rings[i].hdr->tail, tails[i]);
	}
	mutex_unlock(&s->lock);
out:
	if (tails != stack)
		kvfree(tails);
	return err;
}

static long msrdrv_sampler_ioctl(struct file *file, unsigned int cmd,
				 unsigned long arg)
{
	struct msrdrv_sampler *s = file->private_data;

	switch (cmd) {
	case MSRDRV_IOC_SAMPLER_CONSUME:
		return msrdrv_sampler_consume(s, (void __user *)arg);
	case MSRDRV_IOC_SAMPLER_STOP:
		mutex_lock(&s->lock);
		msrdrv_sampler_stop(s);
		mutex_unlock(&s->lock);
		return 0;
	default:
		return -ENOTTY;
	}
}

static const struct file_operations msrdrv_sampler_fops = {
	.owner = THIS_MODULE,
	.release = msrdrv_sampler_release,
	.poll = msrdrv_sampler_poll,
	.mmap = msrdrv_sampler_mmap,
	.unlocked_ioctl = msrdrv_sampler_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

/* --- start --------------------------------------------------------------- */

/* The header's fields on their own: 0 or why the request is refused. */
static int msrdrv_sampler_check(const struct msrdrv_sampler_start *a,
				bool rawio)
{
	size_t i;

	if (a->abi_version != MSRDRV_ABI_VERSION)
		return -EPROTO;
	if (a->flags)
		return -EINVAL;
	for (i = 0; i < ARRAY_SIZE(a->reserved); i++)
		if (a->reserved[i])
			return -EINVAL;
	if (!a->nops)
		return -EINVAL;
	if (a->nops > msrdrv_sampler_max_ops(rawio))
		return -E2BIG;
	if (a->nrecords < 2 || !is_power_of_2(a->nrecords))
		return -EINVAL;
	if (!a->watermark || a->watermark > a->nrecords)
		return -EINVAL;
	if (!a->cpus_size || a->cpus_size > MSRDRV_SAMPLER_CPUS_SIZE_MAX)
		return -EINVAL;
	if (a->period_ns < msrdrv_sampler_min_period(rawio) ||
	    a->period_ns > MSRDRV_SAMPLER_PERIOD_MAX_NS)
		return -ERANGE;
	return 0;
}

/*
 * EDQUOT if one tick of ops, timed here with interrupts off (the fastest
 * of three passes: the first pays for cold caches), would take more of
 * each period than the opener's samplers may take of a CPU.
 */
static int msrdrv_sampler_fits(const struct msrdrv_op *ops, u32 n,
			       u64 period_ns, bool rawio)
{
	unsigned long flags;
	u64 t = U64_MAX, t0, val;
	u32 i, pass;

	for (pass = 0; pass < 3; pass++) {
		local_irq_save(flags);
		t0 = ktime_get_ns();
		for (i = 0; i < n; i++)
			msrdrv_sample_op(&ops[i], &val);
		t = min(t, ktime_get_ns() - t0);
		local_irq_restore(flags);
	}
	/* cost / period > budget / window, without a division */
	if (t * MSRDRV_BUDGET_WINDOW_NS > msrdrv_budget_ns(rawio) * period_ns)
		return -EDQUOT;
	return 0;
}

static int msrdrv_sampler_check_ops(const struct msrdrv_op *ops, u32 n)
{
	bool notsc = test_thread_flag(TIF_NOTSC);
	u32 i;

	for (i = 0; i < n; i++) {
		if (ops[i].op > MSRDRV_OP_MAX)
			return -EINVAL;
		if (ops[i].op != MSRDRV_OP_READ && ops[i].op != MSRDRV_OP_RDTSC)
			return -EOPNOTSUPP;
		if (ops[i].flags || ops[i].mask ||
		    ops[i].cpu != MSRDRV_CPU_SELF)
			return -EINVAL;
	}
	/* Every record carries the TSC. */
	return notsc ? -EPERM : 0;
}

/* The CPU bitmap: ENXIO for a CPU that cannot exist, EINVAL for none. */
static int msrdrv_sampler_cpus(const struct msrdrv_sampler_start *a,
			       struct cpumask *mask)
{
	unsigned int bit, cpu;
	u8 *bits;
	int err = 0;

	bits = memdup_user(u64_to_user_ptr(a->cpus), a->cpus_size);
	if (IS_ERR(bits))
		return PTR_ERR(bits);
	for (bit = 0; bit < a->cpus_size * 8; bit++) {
		if (!(bits[bit / 8] & BIT(bit % 8)))
			continue;
		if (bit >= nr_cpu_ids) {
			err = -ENXIO;
			break;
		}
		cpu = array_index_nospec(bit, nr_cpu_ids);
		if (!cpu_possible(cpu)) {
			err = -ENXIO;
			break;
		}
		cpumask_set_cpu(cpu, mask);
	}
	kfree(bits);
	if (!err && cpumask_empty(mask))
		err = -EINVAL;
	return err;
}

/* Lay out the area: the sampler's header, then each ring's. */
static void msrdrv_sampler_layout(struct msrdrv_sampler *s,
				  const struct cpumask *mask, u64 stride)
{
	struct msrdrv_sampler_header *hdr = s->buf;
	unsigned int cpu, i = 0;

	hdr->abi_version = MSRDRV_ABI_VERSION;
	hdr->nrings = s->nrings;
	hdr->nops = s->nops;
	hdr->record_size = s->record_size;
	hdr->nrecords = s->nrecords;
	hdr->watermark = s->watermark;
	hdr->period_ns = ktime_to_ns(s->period);
	hdr->ring_offset = PAGE_SIZE;
	hdr->ring_stride = stride;
	hdr->data_offset = PAGE_SIZE;
	hdr->tsc_khz = tsc_khz;
	for_each_cpu(cpu, mask) {
		struct msrdrv_ring *r = &s->rings[i];

		r->s = s;
		r->cpu = cpu;
		r->hdr = s->buf + PAGE_SIZE + i * stride;
		r->data = (u8 *)r->hdr + PAGE_SIZE;
		r->hdr->cpu = cpu;
		r->hdr->state = MSRDRV_RING_OFFLINE;
		msrdrv_hrtimer_setup(&r->timer, msrdrv_sampler_tick,
				     CLOCK_MONOTONIC,
				     HRTIMER_MODE_ABS_PINNED_HARD);
		i++;
	}
}

/*
 * Allocate and lay out a sampler for the checked request; ops become its.
 * Returns it or an ERR_PTR (EFBIG, EBUSY, ENOMEM): the size and count
 * limits, for members per user.
 */
static struct msrdrv_sampler *
msrdrv_sampler_alloc(const struct msrdrv_sampler_start *a,
		     struct msrdrv_op *ops, const struct cpumask *mask,
		     bool rawio)
{
	u32 nrings = cpumask_weight(mask);
	u32 record_size = sizeof(struct msrdrv_record) +
			  a->nops * sizeof(u64);
	u64 stride = PAGE_SIZE + PAGE_ALIGN((u64)a->nrecords * record_size);
	u64 size = PAGE_SIZE + nrings * stride;
	kuid_t uid = current_euid();
	struct msrdrv_sampler *s;
	int err;

	if (size > (u64)msrdrv_sampler_max_kib(rawio) * SZ_1K)
		return ERR_PTR(-EFBIG);
	err = msrdrv_sampler_get_slot(rawio, uid, size);
	if (err)
		return ERR_PTR(err);
	s = kvzalloc(struct_size(s, rings, nrings), MSRDRV_SAMPLER_GFP);
	if (!s)
		goto nomem;
	s->buf = __vmalloc(size, MSRDRV_SAMPLER_GFP | __GFP_ZERO);
	if (!s->buf) {
		kvfree(s);
		goto nomem;
	}
	s->ops = ops;
	s->uid = uid;
	s->size = size;
	s->nops = a->nops;
	s->nrecords = a->nrecords;
	s->record_size = record_size;
	s->watermark = a->watermark;
	s->nrings = nrings;
	s->rawio = rawio;
	s->period = ns_to_ktime(a->period_ns);
	init_waitqueue_head(&s->wq);
	init_irq_work(&s->wake, msrdrv_sampler_wake);
	mutex_init(&s->lock);
	s->watch.ops = ops;
	s->watch.nops = a->nops;
	s->watch.rawio = rawio;
	s->watch.revoke = msrdrv_sampler_revoke;
	msrdrv_sampler_layout(s, mask, stride);
	return s;
nomem:
	msrdrv_sampler_put_slot(rawio, uid, size);
	return ERR_PTR(-ENOMEM);
}

/* The out fields, the only ones written back. */
static int msrdrv_sampler_put(struct msrdrv_sampler_start __user *u,
			      const struct msrdrv_sampler *s)
{
	struct msrdrv_sampler_header *hdr = s->buf;

	if (put_user(s->nrings, &u->nrings) ||
	    put_user(s->record_size, &u->record_size) ||
	    put_user(hdr->ring_stride, &u->ring_stride) ||
	    put_user((u64)s->size, &u->mmap_size))
		return -EFAULT;
	return 0;
}

/* Returns the sampler's new fd or a negative errno; then nothing runs. */
long msrdrv_sampler_start(struct file *file,
			  struct msrdrv_sampler_start __user *uarg)
{
	const struct msrdrv_file *mf = file->private_data;
	struct msrdrv_sampler_start a;
	struct msrdrv_sampler *s;
	struct msrdrv_op *ops;
	cpumask_var_t mask;
	struct file *f;
	int err, fd;

	if (!(file->f_mode & FMODE_READ))
		return -EBADF;
	/* A 32-bit task would read the rings' u64 head and tail torn. */
	if (in_compat_syscall())
		return -ENOEXEC;
	if (copy_from_user(&a, uarg, sizeof(a)))
		return -EFAULT;
	err = msrdrv_sampler_check(&a, mf->rawio);
	if (err)
		return err;
	ops = kvmalloc_array(a.nops, sizeof(*ops), MSRDRV_SAMPLER_GFP);
	if (!ops)
		return -ENOMEM;
	err = -EFAULT;
	if (copy_from_user(ops, u64_to_user_ptr(a.ops),
			   array_size(a.nops, sizeof(*ops))))
		goto out_ops;
	err = msrdrv_sampler_check_ops(ops, a.nops);
	if (err)
		goto out_ops;
	err = -ENOMEM;
	if (!zalloc_cpumask_var(&mask, GFP_KERNEL))
		goto out_ops;
	err = msrdrv_sampler_cpus(&a, mask);
	s = err ? ERR_PTR(err) : msrdrv_sampler_alloc(&a, ops, mask,
						      mf->rawio);
	free_cpumask_var(mask);
	if (IS_ERR(s)) {
		err = PTR_ERR(s);
		goto out_ops;
	}
	/* From here s owns ops. */
	err = msrdrv_policy_watch_add(&s->watch);
	if (err)
		goto out_free;
	/* The ops are allowed now: timing them reads nothing forbidden. */
	err = msrdrv_sampler_fits(ops, a.nops, a.period_ns, mf->rawio);
	if (err)
		goto out_watch;
	fd = get_unused_fd_flags(O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = fd;
		goto out_watch;
	}
	f = anon_inode_getfile("[msrdrv-sampler]", &msrdrv_sampler_fops, s,
			       O_RDONLY);
	if (IS_ERR(f)) {
		put_unused_fd(fd);
		err = PTR_ERR(f);
		goto out_watch;
	}
	/* From here the file owns s: its release stops and frees it. */
	s->epoch = ktime_get();
	err = cpuhp_state_add_instance(msrdrv_cpuhp, &s->cpuhp);
	s->cpuhp_added = !err;
	if (!err)
		err = msrdrv_sampler_put(uarg, s);
	if (err) {
		put_unused_fd(fd);
		fput(f);
		return err;
	}
	fd_install(fd, f);
	return fd;

out_watch:
	msrdrv_policy_watch_del(&s->watch);
out_free:
	msrdrv_sampler_free(s);
	return err;
out_ops:
	kvfree(ops);
	return err;
}

/* --- what a timer interrupt costs ---------------------------------------- */

#define MSRDRV_IRQ_ROUNDS	25
/* A round waits this long for its timer: past a tick (HZ=100), if hrtimers are low-res. */
#define MSRDRV_IRQ_WAIT_NS	(12 * NSEC_PER_MSEC)
/* Charged when no round saw its interrupt: a guess, said in the log. */
#define MSRDRV_IRQ_NS_GUESS	(10 * NSEC_PER_USEC)

static struct hrtimer msrdrv_irq_timer;
static bool msrdrv_irq_fired;

static enum hrtimer_restart msrdrv_irq_probe(struct hrtimer *timer)
{
	WRITE_ONCE(msrdrv_irq_fired, true);
	return HRTIMER_NORESTART;
}

/*
 * The stall a task spinning on the clock sees when one empty hrtimer
 * interrupt comes and goes: what that interrupt cost it.  0 if the
 * interrupt did not come, or came before the spinning began (arming a
 * timer is slow on a debug kernel under emulation).
 */
static u64 msrdrv_irq_stall(void)
{
	u64 prev, now, stop;

	WRITE_ONCE(msrdrv_irq_fired, false);
	hrtimer_start(&msrdrv_irq_timer, ns_to_ktime(100 * NSEC_PER_USEC),
		      HRTIMER_MODE_REL_PINNED_HARD);
	now = ktime_get_ns();
	if (READ_ONCE(msrdrv_irq_fired))
		return 0;
	stop = now + MSRDRV_IRQ_WAIT_NS;
	do {
		prev = now;
		now = ktime_get_ns();
		if (READ_ONCE(msrdrv_irq_fired))
			/*
			 * It came before this clock read, or after it and
			 * before the check: the next read covers the latter.
			 */
			return max(now - prev, ktime_get_ns() - now);
	} while (now < stop);
	return 0;
}

/*
 * The least stall of the rounds whose interrupt came, on this CPU: another
 * interrupt, or in a guest time the vCPU or the emulator's own thread was
 * not running, only ever raises a round's figure, never lowers it.  Under
 * TCG on a busy host most rounds hold some (a lower quartile of 9 once took
 * 739 us where rounds alone take 13-20), so the rounds are many and spread
 * over a few milliseconds each, to meet the host's quieter moments.
 */
static u64 msrdrv_irq_measure(void)
{
	u64 least = U64_MAX, t;
	int i;

	msrdrv_hrtimer_setup(&msrdrv_irq_timer, msrdrv_irq_probe,
			     CLOCK_MONOTONIC, HRTIMER_MODE_REL_PINNED_HARD);
	for (i = 0; i < MSRDRV_IRQ_ROUNDS; i++) {
		preempt_disable();
		t = msrdrv_irq_stall();
		preempt_enable();
		hrtimer_cancel(&msrdrv_irq_timer);	/* if it never came */
		if (t)
			least = min(least, t);
		usleep_range(1000, 3000);
	}
	if (least == U64_MAX) {
		pr_warn("no timer interrupt within %u ms: charging sampler ticks %ld ns each (set sampler_irq_ns)\n",
			(unsigned int)(MSRDRV_IRQ_WAIT_NS / NSEC_PER_MSEC),
			MSRDRV_IRQ_NS_GUESS);
		return MSRDRV_IRQ_NS_GUESS;
	}
	return min_t(u64, least, MSRDRV_IRQ_NS_MAX);
}

int msrdrv_sampler_init(void)
{
	int ret;

	if (sampler_max > 1024 || sampler_max_ops_user < 1 ||
	    sampler_max_ops_user > MSRDRV_SAMPLER_MAX_OPS ||
	    sampler_min_period_ns < MSRDRV_SAMPLER_PERIOD_FLOOR_NS ||
	    sampler_min_period_ns > MSRDRV_SAMPLER_PERIOD_MAX_NS ||
	    sampler_min_period_ns_user > MSRDRV_SAMPLER_PERIOD_MAX_NS ||
	    sampler_max_kib < 16 || sampler_max_kib > MSRDRV_SAMPLER_KIB_LIMIT ||
	    sampler_cpu_pct < 1 || sampler_cpu_pct > 100) {
		pr_err("sampler parameters out of range (see modinfo msrdrv)\n");
		return -EINVAL;
	}
	if (!sampler_irq_ns)
		sampler_irq_ns = msrdrv_irq_measure();
	ret = cpuhp_setup_state_multi(CPUHP_AP_ONLINE_DYN,
				      "msrdrv/sampler:online",
				      msrdrv_sampler_online,
				      msrdrv_sampler_offline);
	if (ret < 0)
		return ret;
	msrdrv_cpuhp = ret;
	return 0;
}

void msrdrv_sampler_exit(void)
{
	cpuhp_remove_multi_state(msrdrv_cpuhp);
}
