import { createRequire } from 'node:module';
import { BrigError } from '../protocol/index.ts';
import type { Driver, TierStatus } from './driver.ts';
import { jailDriver } from './jail/index.ts';

/**
 * The tiers brig has, by name: the one place a new tier is added (its
 * folder, a line here, and its bundle in scripts/build.mjs). Every caller
 * (brig run, brig agent, the daemon, brig tiers) finds its driver here; a
 * tier that cannot run on this host is refused with the reason, never
 * replaced by a weaker one. The jail is the default and is always loaded;
 * every other tier is loaded when first asked for, so `brig run` on the
 * jail never parses their code.
 */
const DRIVERS: Record<string, () => Driver> = {
  jail: () => jailDriver,
  gvisor: () => (loadTier('gvisor') as { gvisorDriver: Driver }).gvisorDriver,
  vm: () => (loadTier('vm') as { vmDriver: Driver }).vmDriver,
};
const loaded = new Map<string, Driver>();

/** A tier's folder: from the bundles (dist/), its own bundle beside this one (tier-NAME.cjs); from the sources, its index.ts. */
function loadTier(name: string): unknown {
  const bundled = typeof __filename === 'string' && __filename.endsWith('.cjs');
  const load = createRequire(bundled ? __filename : import.meta.url);
  return bundled ? load(`${__dirname}/tier-${name}.cjs`) : load(`./${name}/index.ts`);
}

/** The tier used when nothing names one. */
export const DEFAULT_TIER = 'jail';

export function tierNames(): string[] {
  return Object.keys(DRIVERS);
}

/** The driver of a tier, whether or not it can run here (a daemon stops the sandboxes it has on record). */
export function driverFor(tier: string): Driver {
  const load = Object.hasOwn(DRIVERS, tier) ? DRIVERS[tier] : undefined;
  if (!load) throw new BrigError('BRIG_TIER_UNKNOWN', `there is no tier '${tier}'`, `use one of: ${tierNames().join(', ')} (brig tiers says which run here)`);
  let driver = loaded.get(tier);
  if (!driver) {
    driver = load();
    loaded.set(tier, driver);
  }
  return driver;
}

/** The driver of a tier that runs on this host now. */
export function usableDriver(tier: string): Driver {
  const driver = driverFor(tier);
  const status = driver.status();
  if (!status.available) throw new BrigError(status.code ?? 'BRIG_TIER_UNAVAILABLE', `the ${tier} tier cannot run on this host: ${status.detail}`, status.fix ?? 'brig tiers says what each tier needs');
  return driver;
}

/** Every tier and whether it runs here. */
export function tierStatuses(): Array<{ tier: string; summary: string; status: TierStatus }> {
  return tierNames().map((tier) => {
    const driver = driverFor(tier);
    return { tier, summary: driver.summary, status: driver.status() };
  });
}
