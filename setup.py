from setuptools import setup, find_packages
from configparser import ConfigParser


# nbdev's template imported pkg_resources here; current setuptools no longer ships it.
config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

cfg_keys = 'version description keywords author'.split()
expected = cfg_keys + "lib_name user branch license status min_python audience language".split()
for o in expected: assert o in cfg, "missing expected setting: {}".format(o)
setup_cfg = {o: cfg[o] for o in cfg_keys}

licenses = {'apache2': 'Apache-2.0', 'mit': 'MIT'}   # SPDX expressions (setuptools deprecates license classifiers)
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
py_versions = '3.11 3.12 3.13'.split()

requirements = cfg.get('requirements', '').split()
# every `<extra>_requirements` line of settings.ini is an extra; `all` is all of them but dev
extras = {k[:-len('_requirements')]: cfg[k].split() for k in cfg if k.endswith('_requirements') and cfg[k].strip()}
extras['all'] = sorted({r for name, reqs in extras.items() if name != 'dev' for r in reqs})
min_python = cfg['min_python']
lic = licenses.get(cfg['license'].lower(), cfg['license'])

setup(
    name=cfg['lib_name'],
    license=lic,
    classifiers=['Development Status :: ' + statuses[int(cfg['status']) - 1],   # status = 3 is '3 - Alpha'
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'Natural Language :: ' + cfg['language'].title()]
                + ['Programming Language :: Python :: ' + o for o in py_versions[py_versions.index(min_python):]],
    packages=find_packages(include=['nanochat', 'nanochat.*']),
    include_package_data=True,
    package_data={'nanochat': ['assets/**/*', 'ui/**/*']},
    install_requires=requirements,
    extras_require=extras,
    license_files=['LICENSE'],
    python_requires='>=' + cfg['min_python'],
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={
        'console_scripts': cfg.get('console_scripts', '').split(),
        'nbdev': [f'{cfg.get("lib_path")}={cfg.get("lib_path")}._modidx:d'],
    },
    **setup_cfg)
