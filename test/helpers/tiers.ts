import { tierStatuses } from '../../src/drivers/index.ts';

/**
 * The test matrix of tiers: every tier of the registry, with why it is
 * skipped when it cannot run on this machine (the missing package, device
 * or privilege, as `brig tiers` says it).
 */
export const TEST_TIERS: Array<{ tier: string; skip: string | false }> = tierStatuses().map(({ tier, status }) => ({
  tier,
  skip: status.available ? false : `the ${tier} tier cannot run here: ${status.detail}`,
}));
